# FeatMap beyond closed form: trained mappings, linear-structure analysis, semantic consistency.


# A trained mapping (FeatMap recipe), its per-epoch history, and its scores on every split; with
# featmap.jobs: batched (rules/mapping.smk), every trained mapping of a backbone, layer and
# manipulation in one job.
rule train_mapping:
    input:
        **CELL_STORES,
    output:
        **study.cell_files(MAPPING_CELL, "trained"),
    log:
        study.log(MAPPING_CELL),
    benchmark:
        study.benchmark(MAPPING_CELL)
    wildcard_constraints:
        mapping=one_of(study.single("trained")),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=gpus(config["featmap"]["training"]["device"]),
    params:
        fit=fit_of,
        training=study.settings("featmap.training"),
        code=study.code("fit_mapping"),
    script:
        "../workflow_scripts/fit_mapping.py"


if study.batched("trained"):

    rule train_mappings:
        input:
            **CELL_STORES,
        output:
            **study.group_files(MAPPING_GROUP, "trained"),
        log:
            study.log(f"{MAPPING_GROUP}/trained"),
        benchmark:
            study.benchmark(f"{MAPPING_GROUP}/trained")
        conda:
            ENV
        threads: 1
        resources:
            mem_mb=4000,
            runtime=60 * len(study.batched("trained")),
            gpu=gpus(config["featmap"]["training"]["device"]),
        params:
            fits=trained_fits_of,
            training=study.settings("featmap.training"),
            code=study.code("fit_mappings"),
        script:
            "../workflow_scripts/fit_mappings.py"


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
