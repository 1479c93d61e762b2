# The mapping cells, one job each: the baselines that need no fit (identity, and the exact spatial
# op on the feature grid), the closed-form maps (ridge, Procrustes, and their relative-error
# fits, from Gram matrices of the train split) and the trained mappings (FeatMap recipe,
# rules/featmap.smk). With featmap.jobs: batched, only `spatial` keeps a job per cell: identity
# and the closed forms of a backbone, layer and manipulation are fitted by one job
# (fit_closed_forms), its trained mappings by another (train_mappings).
rule evaluate_baseline:
    input:
        **CELL_STORES,
    output:
        **study.cell_files(MAPPING_CELL, "baseline"),
    log:
        study.log(MAPPING_CELL),
    benchmark:
        study.benchmark(MAPPING_CELL)
    wildcard_constraints:
        mapping=one_of(study.single("baseline")),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        fit=fit_of,
        training={},
        code=study.code("fit_mapping"),
    script:
        "../workflow_scripts/fit_mapping.py"


rule fit_closed_form:
    input:
        **CELL_STORES,
    output:
        **study.cell_files(MAPPING_CELL, "closed_form"),
    log:
        study.log(MAPPING_CELL),
    benchmark:
        study.benchmark(MAPPING_CELL)
    wildcard_constraints:
        mapping=one_of(study.single("closed_form")),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        fit=fit_of,
        training={},
        code=study.code("fit_mapping"),
    script:
        "../workflow_scripts/fit_mapping.py"


if study.batched("closed_forms"):

    rule fit_closed_forms:
        input:
            **CELL_STORES,
        output:
            **study.group_files(MAPPING_GROUP, "closed_forms"),
        log:
            study.log(f"{MAPPING_GROUP}/closed_forms"),
        benchmark:
            study.benchmark(f"{MAPPING_GROUP}/closed_forms")
        conda:
            ENV
        threads: 1
        resources:
            mem_mb=4000,
            runtime=60,
        params:
            fits=closed_form_fits_of,
            training={},
            code=study.code("fit_mappings"),
        script:
            "../workflow_scripts/fit_mappings.py"
