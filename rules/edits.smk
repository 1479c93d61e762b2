# Learned feature-space edits (beyond the papers): a mapping's edit magnified and truncated, read
# by the backbone and, where the layer has a FeatInv model, inverted (featlab.edits).


# Extrapolated, truncated and perturbed features of one cell's test images and the two lenses
# side by side: the backbones' readings, and FeatInv reconstructions where the layer has a model.
rule edit_features:
    input:
        unpack(edit_inputs),
    output:
        metrics=f"{EDIT_CELL}/metrics.json",
        images=f"{EDIT_CELL}/images.safetensors",
    log:
        study.log(EDIT_CELL),
    benchmark:
        study.benchmark(EDIT_CELL)
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=gpus(config["featinv"]["sample"]["device"]),
    params:
        backbone=backbone_of,
        edits=study.settings("edits"),
        lens=study.edit_lens(),
        readers=edit_readers_of,
        sample=study.settings("featinv.sample"),
        labels_match=accuracy_of,
        code=study.code("edit_features"),
    script:
        "../workflow_scripts/edit_features.py"


# Alpha across, test images down: the reconstructions of one cell's magnified edits.
rule plot_edit_strip:
    input:
        f"{EDIT_CELL}/images.safetensors",
    output:
        reported(
            study.figure("edits", "{backbone}", "{layer}", "{manipulation}"),
            "edit_strip",
            "Edits",
            subcategory="{backbone} {layer}",
            labels={"manipulation": "{manipulation}"},
        ),
    log:
        study.log(study.figure("edits", "{backbone}", "{layer}", "{manipulation}")),
    benchmark:
        study.benchmark(study.figure("edits", "{backbone}", "{layer}", "{manipulation}"))
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        plots=study.settings("plots"),
        code=study.code("plot_edit_strip"),
    script:
        "../workflow_scripts/plot_edit_strip.py"


# The two lenses side by side: each test image, its input-space morph and the FeatInv
# reconstruction of the feature-space lens at the morph's feature-space norm.
rule plot_edit_lenses:
    input:
        f"{EDIT_CELL}/images.safetensors",
    output:
        reported(
            study.figure("edit_lenses", "{backbone}", "{layer}", "{manipulation}"),
            "edit_lenses",
            "Edits",
            subcategory="{backbone} {layer}: two lenses",
            labels={"manipulation": "{manipulation}"},
        ),
    log:
        study.log(study.figure("edit_lenses", "{backbone}", "{layer}", "{manipulation}")),
    benchmark:
        study.benchmark(study.figure("edit_lenses", "{backbone}", "{layer}", "{manipulation}"))
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        plots=study.settings("plots"),
        code=study.code("plot_edit_lenses"),
    script:
        "../workflow_scripts/plot_edit_lenses.py"


# The backbone's probability of the target class against alpha, per cell and mapping.
rule plot_edit_probability:
    input:
        study.table(),
    output:
        reported(study.figure("edit_probability"), "edit_probability", "Edits"),
    log:
        study.log(study.figure("edit_probability")),
    benchmark:
        study.benchmark(study.figure("edit_probability"))
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        plots=study.settings("plots"),
        code=study.code("plot_edit_probability"),
    script:
        "../workflow_scripts/plot_edit_probability.py"
