# FeatMap beyond closed form: trained mappings, linear-structure analysis, semantic consistency.


# A trained mapping (FeatMap recipe), its per-epoch history, and its scores on every split.
rule train_mapping:
    input:
        original=features_of("{backbone}", "original"),
        manipulated=features_of("{backbone}", "{manipulation}"),
        images=image_store("{manipulation}"),
    output:
        model=f"{RESULTS}/mappings/{{backbone}}/{{layer}}/{{manipulation}}/{{mapping}}/map.safetensors",
        config=f"{RESULTS}/mappings/{{backbone}}/{{layer}}/{{manipulation}}/{{mapping}}/map.json",
        history=f"{RESULTS}/mappings/{{backbone}}/{{layer}}/{{manipulation}}/{{mapping}}/history.json",
        metrics=f"{RESULTS}/mappings/{{backbone}}/{{layer}}/{{manipulation}}/{{mapping}}/metrics.json",
    log:
        f"{RESULTS}/logs/mappings/{{backbone}}/{{layer}}/{{manipulation}}/{{mapping}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/mappings/{{backbone}}/{{layer}}/{{manipulation}}/{{mapping}}.tsv"
    wildcard_constraints:
        mapping="|".join(TRAINED_MAPPINGS),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=int(config["featmap"]["training"]["device"] == "cuda"),
    params:
        settings=mapping_settings,
        spatial_op=spatial_first_of,
        training=config["featmap"]["training"],
        code=code_hash("mapping", "geometry", "metrics", "tables", "store", "data", "io", "devices"),
    script:
        "../workflow_scripts/train_mapping.py"


# Linear-structure analysis of every affine map (ridge, Procrustes, linear) of one layer.
rule analyse_maps:
    input:
        original=features_of("{backbone}", "original"),
        plan=analysis_inputs,
    output:
        f"{RESULTS}/mappings/{{backbone}}/{{layer}}/analysis.json",
    log:
        f"{RESULTS}/logs/mappings/{{backbone}}/{{layer}}/analysis.log",
    benchmark:
        f"{RESULTS}/benchmarks/mappings/{{backbone}}/{{layer}}/analysis.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        plan=analysis_plan,
        # the standardised space floors channel stds as the trained maps do
        analysis={
            **config["featmap"]["analysis"],
            "std_floor": config["featmap"]["training"]["std_floor"],
        },
        code=code_hash("mapping", "geometry", "metrics", "tables", "store", "data", "io", "devices"),
    script:
        "../workflow_scripts/analyse_maps.py"


# Semantic consistency: the rest of the backbone on every mapping's features of one layer.
rule semantic_consistency:
    input:
        original=features_of("{backbone}", "original"),
        images=image_store("original"),
        weights=trained_weights,
        plan=semantic_inputs,
    output:
        f"{RESULTS}/mappings/{{backbone}}/{{layer}}/semantic.json",
    log:
        f"{RESULTS}/logs/mappings/{{backbone}}/{{layer}}/semantic.log",
    benchmark:
        f"{RESULTS}/benchmarks/mappings/{{backbone}}/{{layer}}/semantic.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        backbone=backbone_config,
        plan=semantic_plan,
        semantic=config["featmap"]["semantic"],
        accuracy=accuracy_written,
        code=code_hash(
            "mapping",
            "backbones",
            "geometry",
            "metrics",
            "tables",
            "store",
            "data",
            "io",
            "_compat",
        ),
    script:
        "../workflow_scripts/semantic_consistency.py"
