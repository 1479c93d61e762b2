# FeatMap beyond closed form: trained mappings, linear-structure analysis, semantic consistency.


# A trained mapping (FeatMap recipe), its per-epoch history, and its scores on every split.
rule train_mapping:
    input:
        original=study.features("{backbone}", "original"),
        manipulated=study.features("{backbone}", "{manipulation}"),
        images=study.images("{manipulation}"),
    output:
        model=f"{MAPPING_CELL}/map.safetensors",
        config=f"{MAPPING_CELL}/map.json",
        history=f"{MAPPING_CELL}/history.json",
        metrics=f"{MAPPING_CELL}/metrics.json",
    log:
        study.log(MAPPING_CELL),
    benchmark:
        study.benchmark(MAPPING_CELL)
    wildcard_constraints:
        mapping=one_of(TRAINED),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=gpus(config["featmap"]["training"]["device"]),
    params:
        settings=mapping_settings_of,
        spatial_op=spatial_first_of,
        training=study.settings("featmap.training"),
        code=study.code("train_mapping"),
    script:
        "../workflow_scripts/train_mapping.py"


# Linear-structure analysis of every affine map (ridge, Procrustes, linear) of one layer.
rule analyse_maps:
    input:
        original=study.features("{backbone}", "original"),
        plan=analysis_inputs,
    output:
        f"{MAPPING_LAYER}/analysis.json",
    log:
        study.log(f"{MAPPING_LAYER}/analysis.json"),
    benchmark:
        study.benchmark(f"{MAPPING_LAYER}/analysis.json")
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        plan=analysis_plan,
        analysis=study.analysis(),
        code=study.code("analyse_maps"),
    script:
        "../workflow_scripts/analyse_maps.py"


# Semantic consistency: the rest of the backbone on every mapping's features of one layer.
rule semantic_consistency:
    input:
        original=study.features("{backbone}", "original"),
        images=study.images("original"),
        weights=weights_of,
        plan=semantic_inputs,
    output:
        f"{MAPPING_LAYER}/semantic.json",
    log:
        study.log(f"{MAPPING_LAYER}/semantic.json"),
    benchmark:
        study.benchmark(f"{MAPPING_LAYER}/semantic.json")
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        backbone=backbone_of,
        plan=semantic_plan,
        semantic=study.settings("featmap.semantic"),
        accuracy=accuracy_of,
        code=study.code("semantic_consistency"),
    script:
        "../workflow_scripts/semantic_consistency.py"
