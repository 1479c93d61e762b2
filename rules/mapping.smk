# Baselines that need no fit: identity, and the exact spatial op on the feature grid.
rule evaluate_baseline:
    input:
        original=study.features("{backbone}", "original"),
        manipulated=study.features("{backbone}", "{manipulation}"),
        images=study.images("{manipulation}"),
    output:
        metrics=f"{MAPPING_CELL}/metrics.json",
    log:
        study.log(MAPPING_CELL),
    benchmark:
        study.benchmark(MAPPING_CELL)
    wildcard_constraints:
        mapping=one_of(BASELINES),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        spec=spec_of,
        code=study.code("evaluate_baseline"),
    script:
        "../workflow_scripts/evaluate_baseline.py"


# Closed-form maps (ridge, Procrustes, and their relative-error fits) from Gram matrices of the
# train split.
rule fit_closed_form:
    input:
        original=study.features("{backbone}", "original"),
        manipulated=study.features("{backbone}", "{manipulation}"),
        images=study.images("{manipulation}"),
    output:
        model=f"{MAPPING_CELL}/map.safetensors",
        metrics=f"{MAPPING_CELL}/metrics.json",
    log:
        study.log(MAPPING_CELL),
    benchmark:
        study.benchmark(MAPPING_CELL)
    wildcard_constraints:
        mapping=one_of(CLOSED_FORM),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        settings=mapping_settings_of,
        spatial_op=spatial_first_of,
        code=study.code("fit_closed_form"),
    script:
        "../workflow_scripts/fit_closed_form.py"
