# A backbone trained as a classifier on the original train split (weights: train).
rule train_backbone:
    input:
        image_store("original"),
    output:
        weights=f"{RESULTS}/models/{{backbone}}/model.safetensors",
        config=f"{RESULTS}/models/{{backbone}}/model.json",
    log:
        f"{RESULTS}/logs/models/{{backbone}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/models/{{backbone}}.tsv"
    conda:
        ENV
    # Small models and batches: one core each trains them nearly as fast as two, and both
    # backbones train side by side.
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        backbone=backbone_config,
        train=lambda wildcards: config["backbones"][wildcards.backbone]["train"],
        code=code_hash("classifier", "backbones", "data", "io", "_compat"),
    script:
        "../workflow_scripts/train_backbone.py"


# All configured layers and the logits of one backbone on one image set.
rule extract:
    input:
        images=image_store("{imageset}"),
        weights=trained_weights,
    output:
        store=directory(features_of("{backbone}", "{imageset}")),
        metrics=f"{RESULTS}/features/{{backbone}}/{{imageset}}.metrics.json",
    log:
        f"{RESULTS}/logs/features/{{backbone}}/{{imageset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/features/{{backbone}}/{{imageset}}.tsv"
    conda:
        ENV
    # One core: jobs of small models gain little from a second, and on a 2-core machine the
    # first backbone's stores are extracted while the second still trains.
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        backbone=backbone_config,
        extraction=config["extraction"],
        code=code_hash(
            "extract", "backbones", "store", "metrics", "tables", "data", "io", "_compat"
        ),
    script:
        "../workflow_scripts/extract.py"
