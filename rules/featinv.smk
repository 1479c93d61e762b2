# FeatInv: diffusion inverters of feature maps, trained per (backbone, layer) from stored features,
# and inversions of original, true-manipulated and mapped features per (manipulation, mapping).


# A FeatInv model (diffusers folders) for one backbone layer, and its training loss curve.
rule train_featinv:
    input:
        features=features_of("{backbone}", "original"),
        images=image_store("original"),
    output:
        model=directory(f"{RESULTS}/featinv/{{backbone}}/{{layer}}/model"),
        loss=f"{RESULTS}/featinv/{{backbone}}/{{layer}}/loss.json",
    log:
        f"{RESULTS}/logs/featinv/{{backbone}}/{{layer}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/featinv/{{backbone}}/{{layer}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=6000,
        runtime=240,
        gpu=int(FEATINV["train"]["device"] == "cuda"),
    params:
        model=featinv_model(),
        train=FEATINV["train"],
        code=FEATINV_CODE,
    script:
        "../workflow_scripts/train_featinv.py"


# Reconstructions of the true original and manipulated features of test images, and the controls.
rule invert_references:
    input:
        model=rules.train_featinv.output.model,
        original=features_of("{backbone}", "original"),
        manipulated=features_of("{backbone}", "{manipulation}"),
        original_images=image_store("original"),
        manipulated_images=image_store("{manipulation}"),
        weights=trained_weights,
    output:
        metrics=f"{RESULTS}/inversions/{{backbone}}/{{layer}}/{{manipulation}}/metrics.json",
        images=f"{RESULTS}/inversions/{{backbone}}/{{layer}}/{{manipulation}}/images.safetensors",
    log:
        f"{RESULTS}/logs/inversions/{{backbone}}/{{layer}}/{{manipulation}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/inversions/{{backbone}}/{{layer}}/{{manipulation}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=int(FEATINV["sample"]["device"] == "cuda"),
    params:
        backbone=backbone_config,
        sample=FEATINV["sample"],
        invert=invert_settings(),
        code=FEATINV_CODE,
    script:
        "../workflow_scripts/invert_references.py"


# Reconstructions from one mapping's features of test images, scored against the references.
rule invert_featinv:
    input:
        model=rules.train_featinv.output.model,
        original=features_of("{backbone}", "original"),
        manipulated=features_of("{backbone}", "{manipulation}"),
        original_images=image_store("original"),
        manipulated_images=image_store("{manipulation}"),
        weights=trained_weights,
        references=rules.invert_references.output.images,
        map=inversion_map,
    output:
        metrics=f"{RESULTS}/inversions/{{backbone}}/{{layer}}/{{manipulation}}/{{mapping}}/metrics.json",
        images=f"{RESULTS}/inversions/{{backbone}}/{{layer}}/{{manipulation}}/{{mapping}}/images.safetensors",
    log:
        f"{RESULTS}/logs/inversions/{{backbone}}/{{layer}}/{{manipulation}}/{{mapping}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/inversions/{{backbone}}/{{layer}}/{{manipulation}}/{{mapping}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=int(FEATINV["sample"]["device"] == "cuda"),
    params:
        backbone=backbone_config,
        spec=manipulation_spec,
        sample=FEATINV["sample"],
        invert=invert_settings(),
        code=FEATINV_CODE + code_hash("mapping", "geometry"),
    script:
        "../workflow_scripts/invert_featinv.py"


# The optimiser's reconstructions of the true features of test images, and of the controls.
rule optimise_references:
    input:
        original=features_of("{backbone}", "original"),
        manipulated=features_of("{backbone}", "{manipulation}"),
        original_images=image_store("original"),
        manipulated_images=image_store("{manipulation}"),
        weights=trained_weights,
    output:
        metrics=f"{RESULTS}/optimisations/{{backbone}}/{{layer}}/{{manipulation}}/metrics.json",
        images=f"{RESULTS}/optimisations/{{backbone}}/{{layer}}/{{manipulation}}/images.safetensors",
    log:
        f"{RESULTS}/logs/optimisations/{{backbone}}/{{layer}}/{{manipulation}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/optimisations/{{backbone}}/{{layer}}/{{manipulation}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=int(FEATINV["optimise"]["device"] == "cuda"),
    params:
        backbone=backbone_config,
        optimise=optimise_settings(),
        invert=invert_settings(),
        resolution=FEATINV["model"]["resolution"],
        baselines=optimise_baselines,
        code=FEATINV_CODE,
    script:
        "../workflow_scripts/optimise_references.py"


# The optimiser's reconstructions from one mapping's features, scored like FeatInv's.
rule optimise_mapping:
    input:
        original=features_of("{backbone}", "original"),
        manipulated=features_of("{backbone}", "{manipulation}"),
        original_images=image_store("original"),
        manipulated_images=image_store("{manipulation}"),
        weights=trained_weights,
        references=rules.optimise_references.output.images,
        map=inversion_map,
    output:
        metrics=f"{RESULTS}/optimisations/{{backbone}}/{{layer}}/{{manipulation}}/{{mapping}}/metrics.json",
        images=f"{RESULTS}/optimisations/{{backbone}}/{{layer}}/{{manipulation}}/{{mapping}}/images.safetensors",
    log:
        f"{RESULTS}/logs/optimisations/{{backbone}}/{{layer}}/{{manipulation}}/{{mapping}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/optimisations/{{backbone}}/{{layer}}/{{manipulation}}/{{mapping}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=int(FEATINV["optimise"]["device"] == "cuda"),
    params:
        backbone=backbone_config,
        spec=manipulation_spec,
        optimise=optimise_settings(),
        invert=invert_settings(),
        resolution=FEATINV["model"]["resolution"],
        code=FEATINV_CODE + code_hash("mapping", "geometry"),
    script:
        "../workflow_scripts/optimise_mapping.py"


# Original | manipulated | each inverter's reconstructions of the true and mapped features.
rule plot_featinv_grid:
    input:
        unpack(cell_reconstructions),
    output:
        report(
            f"{RESULTS}/figures/featinv/{{backbone}}/{{layer}}/{{manipulation}}.png",
            caption="../report/featinv_grid.rst",
            category="FeatInv",
            subcategory="{backbone} {layer}",
            labels={"manipulation": "{manipulation}"},
        ),
    log:
        f"{RESULTS}/logs/figures/featinv/{{backbone}}/{{layer}}/{{manipulation}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/featinv/{{backbone}}/{{layer}}/{{manipulation}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        plots=config["plots"],
        rows=FEATINV["invert"]["grid_images"],
        code=code_hash("plots", "featinv/evaluate"),
    script:
        "../workflow_scripts/plot_featinv_grid.py"


# Image-space and feature-space scores of the inversions against their references.
rule plot_inversion:
    input:
        f"{RESULTS}/tables/metrics.csv",
    output:
        report(
            f"{RESULTS}/figures/inversion_scores.png",
            caption="../report/inversion_scores.rst",
            category="FeatInv",
        ),
    log:
        f"{RESULTS}/logs/figures/inversion_scores.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/inversion_scores.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        plots=config["plots"],
        code=code_hash("plots", "tables"),
    script:
        "../workflow_scripts/plot_inversion.py"


# FeatInv against the optimiser by layer, against the mean-image floor and the resolution ceiling.
rule plot_inverters:
    input:
        f"{RESULTS}/tables/metrics.csv",
    output:
        report(
            f"{RESULTS}/figures/inverters.png",
            caption="../report/inverters.rst",
            category="FeatInv",
        ),
    log:
        f"{RESULTS}/logs/figures/inverters.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/inverters.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        plots=config["plots"],
        code=code_hash("plots", "tables"),
    script:
        "../workflow_scripts/plot_inverters.py"
