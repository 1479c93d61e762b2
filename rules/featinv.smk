# FeatInv: diffusion inverters of feature maps, trained per (backbone, layer) from stored features,
# and inversions of original, true-manipulated and mapped features per (manipulation, mapping), by
# FeatInv and by the optimisation inverter beside it.


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


# The optimiser's reconstructions of the true features of test images, and of the controls.
rule optimise_references:
    input:
        original=study.features("{backbone}", "original"),
        manipulated=study.features("{backbone}", "{manipulation}"),
        original_images=study.images("original"),
        manipulated_images=study.images("{manipulation}"),
        weights=weights_of,
    output:
        metrics=f"{OPTIMISATION_CELL}/metrics.json",
        images=f"{OPTIMISATION_CELL}/images.safetensors",
    log:
        study.log(OPTIMISATION_CELL),
    benchmark:
        study.benchmark(OPTIMISATION_CELL)
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=gpus(config["featinv"]["optimise"]["device"]),
    params:
        backbone=backbone_of,
        optimise=study.settings("featinv.optimise"),
        invert=study.optimise_invert(),
        resolution=config["featinv"]["model"]["resolution"],
        baselines=optimise_baselines_of,
        code=study.code("optimise_references"),
    script:
        "../workflow_scripts/optimise_references.py"


# The optimiser's reconstructions from one mapping's features, scored like FeatInv's.
rule optimise_mapping:
    input:
        original=study.features("{backbone}", "original"),
        manipulated=study.features("{backbone}", "{manipulation}"),
        original_images=study.images("original"),
        manipulated_images=study.images("{manipulation}"),
        weights=weights_of,
        references=rules.optimise_references.output.images,
        map=inversion_map,
    output:
        metrics=f"{OPTIMISATION_MAPPING}/metrics.json",
        images=f"{OPTIMISATION_MAPPING}/images.safetensors",
    log:
        study.log(OPTIMISATION_MAPPING),
    benchmark:
        study.benchmark(OPTIMISATION_MAPPING)
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=gpus(config["featinv"]["optimise"]["device"]),
    params:
        backbone=backbone_of,
        spec=spec_of,
        optimise=study.settings("featinv.optimise"),
        invert=study.optimise_invert(),
        resolution=config["featinv"]["model"]["resolution"],
        code=study.code("optimise_mapping"),
    script:
        "../workflow_scripts/optimise_mapping.py"


# Original | manipulated | each inverter's reconstructions of the true and mapped features.
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


# FeatInv against the optimiser by layer, against the mean-image floor and the resolution ceiling.
rule plot_inverters:
    input:
        study.table(),
    output:
        reported(study.figure("inverters"), "inverters", "FeatInv"),
    log:
        study.log(study.figure("inverters")),
    benchmark:
        study.benchmark(study.figure("inverters"))
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        plots=study.settings("plots"),
        code=study.code("plot_inverters"),
    script:
        "../workflow_scripts/plot_inverters.py"
