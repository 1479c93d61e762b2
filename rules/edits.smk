# Learned feature-space edits (beyond the papers): a mapping's edit magnified and truncated, read
# by the backbone and, where the layer has a FeatInv model, inverted (featlab.edits).
from featlab.edits.settings import EditSettings

EDITS = config["edits"]


def edit_settings():
    """How edits are made and read: the edits section without the choice of cells."""
    return {k: v for k, v in EDITS.items() if k not in ("manipulations", "layers", "mappings")}


def edit_cells():
    """Every (backbone, layer, manipulation) whose edits are studied, with the mappings (of
    edits.mappings) fitted there; none without edits.manipulations (the default)."""
    unknown = sorted(set(EDITS["manipulations"]) - set(MANIPULATIONS))
    if unknown:
        raise ValueError(f"edits.manipulations: {unknown} are not manipulations of the study")
    if not EDITS["manipulations"]:
        return {}
    EditSettings(**edit_settings())  # names the key of a bad value
    cells = {}
    for backbone, layer in chosen_layers(EDITS["layers"], "edits.layers"):
        for manipulation in EDITS["manipulations"]:
            fitted = mappings_for(manipulation, layer)
            mappings = [m for m in EDITS["mappings"] if m in fitted]
            if not mappings:
                raise ValueError(
                    f"edits.mappings: none of {EDITS['mappings']} is fitted on {backbone} "
                    f"{layer} {manipulation}; add one to mappings (or featmap.trained_subset)"
                )
            cells[(backbone, layer, manipulation)] = mappings
    return cells


EDIT_CELLS = edit_cells()


def edit_mappings(wildcards):
    return EDIT_CELLS[(wildcards.backbone, wildcards.layer, wildcards.manipulation)]


def edit_maps(wildcards):
    """The map files of the cell's mappings, in edit_mappings' order."""
    w = wildcards
    return [map_file(w.backbone, w.layer, w.manipulation, m) for m in edit_mappings(w)]


def edit_featinv(wildcards):
    """The layer's FeatInv model, where it has one; its edits are then inverted too."""
    if (wildcards.backbone, wildcards.layer) not in featinv_layers():
        return []
    return f"{RESULTS}/featinv/{wildcards.backbone}/{wildcards.layer}/model"


def edit_metrics():
    return [f"{RESULTS}/edits/{'/'.join(cell)}/metrics.json" for cell in EDIT_CELLS]


def edit_figures():
    """A strip per inverted cell, and the probability against alpha; none without cells."""
    if not EDIT_CELLS:
        return []
    inverted = featinv_layers() if EDITS["invert_images"] else []
    strips = [
        f"{RESULTS}/figures/edits/{'/'.join(cell)}.png"
        for cell in EDIT_CELLS
        if cell[:2] in inverted
    ]
    return [*strips, f"{RESULTS}/figures/edit_probability.png"]


# Extrapolated, truncated and perturbed features of one cell's test images: the backbone's
# readings, and their FeatInv reconstructions where the layer has a model.
rule edit_features:
    input:
        original=features_of("{backbone}", "original"),
        manipulated=features_of("{backbone}", "{manipulation}"),
        original_images=image_store("original"),
        manipulated_images=image_store("{manipulation}"),
        weights=trained_weights,
        maps=edit_maps,
        featinv=edit_featinv,
    output:
        metrics=f"{RESULTS}/edits/{{backbone}}/{{layer}}/{{manipulation}}/metrics.json",
        images=f"{RESULTS}/edits/{{backbone}}/{{layer}}/{{manipulation}}/images.safetensors",
    log:
        f"{RESULTS}/logs/edits/{{backbone}}/{{layer}}/{{manipulation}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/edits/{{backbone}}/{{layer}}/{{manipulation}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
        gpu=int(FEATINV["sample"]["device"] == "cuda"),
    params:
        backbone=backbone_config,
        mappings=edit_mappings,
        edits=edit_settings(),
        sample=FEATINV["sample"],
        labels_match=accuracy_written,
        code=FEATINV_CODE + code_hash("edits", "mapping", "geometry", "_compat"),
    script:
        "../workflow_scripts/edit_features.py"


# Alpha across, test images down: the reconstructions of one cell's magnified edits.
rule plot_edit_strip:
    input:
        f"{RESULTS}/edits/{{backbone}}/{{layer}}/{{manipulation}}/images.safetensors",
    output:
        report(
            f"{RESULTS}/figures/edits/{{backbone}}/{{layer}}/{{manipulation}}.png",
            caption="../report/edit_strip.rst",
            category="Edits",
            subcategory="{backbone} {layer}",
            labels={"manipulation": "{manipulation}"},
        ),
    log:
        f"{RESULTS}/logs/figures/edits/{{backbone}}/{{layer}}/{{manipulation}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/edits/{{backbone}}/{{layer}}/{{manipulation}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        plots=config["plots"],
        code=code_hash("plots"),
    script:
        "../workflow_scripts/plot_edit_strip.py"


# The backbone's probability of the target class against alpha, per cell and mapping.
rule plot_edit_probability:
    input:
        f"{RESULTS}/tables/metrics.csv",
    output:
        report(
            f"{RESULTS}/figures/edit_probability.png",
            caption="../report/edit_probability.rst",
            category="Edits",
        ),
    log:
        f"{RESULTS}/logs/figures/edit_probability.log",
    benchmark:
        f"{RESULTS}/benchmarks/figures/edit_probability.tsv"
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
        "../workflow_scripts/plot_edit_probability.py"
