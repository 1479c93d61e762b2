# FeatInv: diffusion inverters of feature maps, trained per (backbone, layer) from stored features,
# and inversions of original, true-manipulated and mapped features per (manipulation, mapping).
FEATINV = config["featinv"]
FEATINV_CODE = code_hash("featinv", "backbones", "store", "data", "metrics", "tables", "io")


def featinv_layers():
    """(backbone, layer) pairs that get a FeatInv model: the configured ones, else each deepest."""
    chosen = FEATINV["layers"] or {b: config["backbones"][b]["layers"][-1:] for b in BACKBONES}
    for backbone, layers in chosen.items():
        stored = config["backbones"].get(backbone, {}).get("layers", [])
        unknown = [layer for layer in layers if layer not in stored]
        if backbone not in config["backbones"] or unknown:
            raise ValueError(
                f"featinv.layers: {backbone} {unknown or ''} is not a stored backbone layer; "
                f"choose among backbones.{backbone}.layers"
            )
    return [(backbone, layer) for backbone, layers in chosen.items() for layer in layers]


def featinv_cells():
    """Every (backbone, layer, manipulation) to invert, with the mappings inverted there."""
    wanted = FEATINV["invert"]
    unknown = set(wanted["manipulations"] or []) - set(MANIPULATIONS)
    if unknown:
        raise ValueError(f"featinv.invert.manipulations: {sorted(unknown)} are not manipulations")
    return {
        (backbone, layer, manipulation): [
            m
            for m in mappings_for(manipulation, layer)
            if wanted["mappings"] is None or m in wanted["mappings"]
        ]
        for backbone, layer in featinv_layers()
        for manipulation in wanted["manipulations"] or MANIPULATIONS
    }


def invert_settings():
    """How inversions are made and scored: featinv.invert without the choice of what to invert."""
    return {k: v for k, v in FEATINV["invert"].items() if k not in ("manipulations", "mappings")}


def inversion_dir(backbone, layer, manipulation, mapping):
    return f"{RESULTS}/inversions/{backbone}/{layer}/{manipulation}/{mapping}"


def inversion_metrics():
    """Every inversion's metrics: the references of each cell, and each mapping inverted there."""
    cells = featinv_cells()
    references = [f"{RESULTS}/inversions/{b}/{layer}/{m}/metrics.json" for b, layer, m in cells]
    mapped = [
        f"{inversion_dir(*cell, mapping)}/metrics.json"
        for cell, mappings in cells.items()
        for mapping in mappings
    ]
    return references + mapped


def inversion_figures():
    """A reconstruction grid per inverted (backbone, layer, manipulation), and the scores figure."""
    cells = list(featinv_cells())
    if not cells:
        return []
    grids = [f"{RESULTS}/figures/featinv/{'/'.join(cell)}.png" for cell in cells]
    return [*grids, f"{RESULTS}/figures/inversion_scores.png"]


def cell_reconstructions(wildcards):
    """The references of one (backbone, layer, manipulation) and each mapping's reconstructions."""
    w = wildcards
    cell = (w.backbone, w.layer, w.manipulation)
    files = {"references": f"{RESULTS}/inversions/{'/'.join(cell)}/images.safetensors"}
    for mapping in featinv_cells()[cell]:
        files[mapping] = f"{inversion_dir(*cell, mapping)}/images.safetensors"
    return files


def inversion_map(wildcards):
    """The fitted map an inversion applies; none for the identity and spatial baselines."""
    w = wildcards
    return map_file(w.backbone, w.layer, w.manipulation, w.mapping) or []


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
        model=FEATINV["model"],
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


# Original | manipulated | reconstructions of the original, manipulated and mapped features.
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
        code=code_hash("plots"),
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
