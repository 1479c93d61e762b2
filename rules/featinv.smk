# FeatInv: diffusion inverters of feature maps, trained per (backbone, layer) from stored features,
# and inversions of original, true-manipulated and mapped features per (manipulation, mapping).


# A FeatInv model (diffusers folders) for one backbone layer, and its training loss curve.
rule train_featinv:
    input:
        features=study.features("{backbone}", "original"),
        images=study.images("original"),
    output:
        model=directory(f"{study.featinv('{backbone}', '{layer}')}/model"),
        loss=f"{study.featinv('{backbone}', '{layer}')}/loss.json",
    log:
        study.log(study.featinv("{backbone}", "{layer}")),
    benchmark:
        study.benchmark(study.featinv("{backbone}", "{layer}"))
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=6000,
        runtime=240,
        gpu=gpus(config["featinv"]["train"]["device"]),
    params:
        model=study.settings("featinv.model"),
        train=study.settings("featinv.train"),
        code=study.code("train_featinv"),
    script:
        "../workflow_scripts/train_featinv.py"


# Reconstructions of the true original and manipulated features of test images, and the controls.
rule invert_references:
    input:
        unpack(inversion_inputs),
    output:
        metrics=f"{INVERSION_CELL}/metrics.json",
        images=f"{INVERSION_CELL}/images.safetensors",
    log:
        study.log(INVERSION_CELL),
    benchmark:
        study.benchmark(INVERSION_CELL)
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=gpus(config["featinv"]["sample"]["device"]),
    params:
        backbone=backbone_of,
        sample=study.settings("featinv.sample"),
        invert=study.settings("featinv.invert"),
        code=study.code("invert_references"),
    script:
        "../workflow_scripts/invert_references.py"


# Reconstructions from one mapping's features of test images, scored against the references.
rule invert_featinv:
    input:
        unpack(inversion_inputs),
        references=rules.invert_references.output.images,
        map=inversion_map,
    output:
        metrics=f"{INVERSION_MAPPING}/metrics.json",
        images=f"{INVERSION_MAPPING}/images.safetensors",
    log:
        study.log(INVERSION_MAPPING),
    benchmark:
        study.benchmark(INVERSION_MAPPING)
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=gpus(config["featinv"]["sample"]["device"]),
    params:
        backbone=backbone_of,
        spec=spec_of,
        sample=study.settings("featinv.sample"),
        invert=study.settings("featinv.invert"),
        code=study.code("invert_featinv"),
    script:
        "../workflow_scripts/invert_featinv.py"


# Original | manipulated | reconstructions of the original, manipulated and mapped features.
rule plot_featinv_grid:
    input:
        unpack(reconstructions_of),
    output:
        reported(
            study.figure("featinv", "{backbone}", "{layer}", "{manipulation}"),
            "featinv_grid",
            "FeatInv",
            subcategory="{backbone} {layer}",
            labels={"manipulation": "{manipulation}"},
        ),
    log:
        study.log(study.figure("featinv", "{backbone}", "{layer}", "{manipulation}")),
    benchmark:
        study.benchmark(study.figure("featinv", "{backbone}", "{layer}", "{manipulation}"))
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        plots=study.settings("plots"),
        rows=config["featinv"]["invert"]["grid_images"],
        code=study.code("plot_featinv_grid"),
    script:
        "../workflow_scripts/plot_featinv_grid.py"


# Image-space and feature-space scores of the inversions against their references.
rule plot_inversion:
    input:
        study.table(),
    output:
        reported(study.figure("inversion_scores"), "inversion_scores", "FeatInv"),
    log:
        study.log(study.figure("inversion_scores")),
    benchmark:
        study.benchmark(study.figure("inversion_scores"))
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        plots=study.settings("plots"),
        code=study.code("plot_inversion"),
    script:
        "../workflow_scripts/plot_inversion.py"
