# Filter decoding (METHODS.md): neurons of CNN layers as image-space filters, two methods.


# A layer's decoded filters (both methods) and their fidelity on random test-image patches.
rule decode_filters:
    input:
        images=study.images("original"),
        weights=weights_of,
    output:
        filters=f"{study.filters('{backbone}', '{layer}')}/filters.safetensors",
        info=f"{study.filters('{backbone}', '{layer}')}/filters.json",
        metrics=f"{study.filters('{backbone}', '{layer}')}/metrics.json",
    log:
        study.log(study.filters("{backbone}", "{layer}")),
    benchmark:
        study.benchmark(study.filters("{backbone}", "{layer}"))
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
        gpu=gpus(config["filters"]["device"]),
    params:
        backbone=backbone_of,
        settings=study.settings("filters"),
        code=study.code("decode_filters"),
    script:
        "../workflow_scripts/decode_filters.py"


# The neuron grid of a layer: each decoded filter by substitution above its deconvolution.
rule plot_filters:
    input:
        rules.decode_filters.output.filters,
        rules.decode_filters.output.info,
    output:
        reported(
            study.figure("filters", "{backbone}", "{layer}"),
            "filters",
            "Filter decoding",
            subcategory="{backbone}",
            labels={"backbone": "{backbone}", "layer": "{layer}"},
        ),
    log:
        study.log(study.figure("filters", "{backbone}", "{layer}")),
    benchmark:
        study.benchmark(study.figure("filters", "{backbone}", "{layer}"))
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        plots=study.settings("plots"),
        code=study.code("plot_filters"),
    script:
        "../workflow_scripts/plot_filters.py"
