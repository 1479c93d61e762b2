# Steerable lens: morphs of test images toward a target class, driven by a classifier's gradient
# in a complex steerable pyramid (and in pixel and Fourier comparators), and their figures.


# Every morph of one case (a test image and a target class) driven by one backbone's gradient.
rule lens:
    input:
        images=study.images("original"),
        weights=study.lens_weights(),
    output:
        frames=study.lens("{backbone}", "{case}", "frames.safetensors"),
        morphs=study.lens("{backbone}", "{case}", "morphs.json"),
        metrics=study.lens("{backbone}", "{case}", "metrics.json"),
    log:
        study.log(study.lens("{backbone}", "{case}")),
    benchmark:
        study.benchmark(study.lens("{backbone}", "{case}"))
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        case=lens_case_of,
        settings=study.settings("lens"),
        backbones=study.lens_backbones(),
        weights=study.lens_weight_files(),
        input_size=config["extraction"]["input_size"],
        code=study.code("lens"),
    script:
        "../workflow_scripts/lens.py"


# A frame strip (PNG) and an animated GIF of every case of one driving backbone.
rule lens_strips:
    input:
        frames=study.lens_files("{backbone}", "frames.safetensors"),
        morphs=study.lens_files("{backbone}", "morphs.json"),
    output:
        strips=reported(STRIPS["png"], "lens_strip", "Steerable lens", subcategory="{backbone}"),
        gifs=reported(STRIPS["gif"], "lens_strip", "Steerable lens", subcategory="{backbone}"),
    log:
        study.log(study.figure("lens", "{backbone}", suffix="")),
    benchmark:
        study.benchmark(study.figure("lens", "{backbone}", suffix=""))
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=study.code("lens_strips"),
    script:
        "../workflow_scripts/lens_strips.py"


# Target probability, transfer and warp share by method, variant and budget (median over cases).
rule plot_lens:
    input:
        study.table(),
    output:
        reported(study.figure("lens_summary"), "lens_summary", "Steerable lens"),
    log:
        study.log(study.figure("lens_summary")),
    benchmark:
        study.benchmark(study.figure("lens_summary"))
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        plots=study.settings("plots"),
        code=study.code("plot_lens"),
    script:
        "../workflow_scripts/plot_lens.py"
