# Baselines that need no fit: identity, and the exact spatial op on the feature grid.
rule evaluate_baseline:
    input:
        original=features_of("{backbone}", "original"),
        manipulated=features_of("{backbone}", "{manipulation}"),
        images=image_store("{manipulation}"),
    output:
        metrics=f"{RESULTS}/mappings/{{backbone}}/{{layer}}/{{manipulation}}/{{mapping}}/metrics.json",
    log:
        f"{RESULTS}/logs/mappings/{{backbone}}/{{layer}}/{{manipulation}}/{{mapping}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/mappings/{{backbone}}/{{layer}}/{{manipulation}}/{{mapping}}.tsv"
    wildcard_constraints:
        mapping="identity|spatial",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        spec=manipulation_spec,
        code=code_hash("mapping", "geometry", "metrics", "tables", "store", "data", "io", "devices"),
    script:
        "../workflow_scripts/evaluate_baseline.py"


# Closed-form maps (ridge, Procrustes, and their relative-error fits) from Gram matrices of the
# train split.
rule fit_closed_form:
    input:
        original=features_of("{backbone}", "original"),
        manipulated=features_of("{backbone}", "{manipulation}"),
        images=image_store("{manipulation}"),
    output:
        model=f"{RESULTS}/mappings/{{backbone}}/{{layer}}/{{manipulation}}/{{mapping}}/map.safetensors",
        metrics=f"{RESULTS}/mappings/{{backbone}}/{{layer}}/{{manipulation}}/{{mapping}}/metrics.json",
    log:
        f"{RESULTS}/logs/mappings/{{backbone}}/{{layer}}/{{manipulation}}/{{mapping}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/mappings/{{backbone}}/{{layer}}/{{manipulation}}/{{mapping}}.tsv"
    wildcard_constraints:
        mapping="ridge|procrustes|ridge_relative|procrustes_relative",
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        settings=mapping_settings,
        spatial_op=spatial_first_of,
        code=code_hash("mapping", "geometry", "metrics", "tables", "store", "data", "io", "devices"),
    script:
        "../workflow_scripts/fit_closed_form.py"
