# Learned feature-space edits (beyond the papers): a mapping's edit magnified and truncated, read
# by the backbone and, where the layer has a FeatInv model, inverted (featlab.edits).


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
