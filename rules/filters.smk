# Filter decoding (METHODS.md): neurons of CNN layers as image-space filters, two methods.


# A layer's decoded filters (both methods) and their fidelity on random test-image patches.
rule decode_filters:
    input:
        images=image_store("original"),
        weights=trained_weights,
    output:
        filters=f"{RESULTS}/filters/{{backbone}}/{{layer}}/filters.safetensors",
        info=f"{RESULTS}/filters/{{backbone}}/{{layer}}/filters.json",
        metrics=f"{RESULTS}/filters/{{backbone}}/{{layer}}/metrics.json",
    log:
        f"{RESULTS}/logs/filters/{{backbone}}/{{layer}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/filters/{{backbone}}/{{layer}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=int(config["filters"]["device"] == "cuda"),
    params:
        backbone=backbone_config,
        settings=filter_settings(),
        code=code_hash(
            "filters", "backbones", "devices", "metrics", "tables", "data", "io", "_compat"
        ),
    script:
        "../workflow_scripts/decode_filters.py"


# The neuron grid of a layer: each decoded filter by substitution above its deconvolution.
rule plot_filters:
    input:
        rules.decode_filters.output.filters,
        rules.decode_filters.output.info,
    output:
        report(
            f"{RESULTS}/figures/filters/{{backbone}}/{{layer}}.png",
            caption="../report/filters.rst",
            category="Filter decoding",
            subcategory="{backbone}",
            labels={"backbone": "{backbone}", "layer": "{layer}"},
        ),
    log:
        f"{RESULTS}/logs/figures/filters/{{backbone}}/{{layer}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/filters/{{backbone}}/{{layer}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        plots=config["plots"],
        code=code_hash("plots", "filters", "backbones", "metrics", "tables", "io", "_compat"),
    script:
        "../workflow_scripts/plot_filters.py"
