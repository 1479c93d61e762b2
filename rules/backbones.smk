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
    wildcard_constraints:
        backbone=one_of(backbones_with("train")),
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


# A backbone's random weights (weights: random), drawn once from its seed: every job of the
# study reads this one network, and the feature stores record its sha256.
rule init_backbone:
    output:
        weights=f"{RESULTS}/models/{{backbone}}/model.safetensors",
        config=f"{RESULTS}/models/{{backbone}}/model.json",
    log:
        f"{RESULTS}/logs/models/{{backbone}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/models/{{backbone}}.tsv"
    wildcard_constraints:
        backbone=one_of(backbones_with("random")),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        backbone=backbone_config,
        seed=lambda wildcards: config["backbones"][wildcards.backbone]["seed"],
        code=code_hash("backbones", "io", "_compat"),
    script:
        "../workflow_scripts/init_backbone.py"


# One shard of an image set (extraction.images_per_shard images) through one backbone: all
# configured layers and the logits in one pass.
rule extract:
    input:
        images=image_store("{imageset}"),
        weights=trained_weights,
    output:
        store=directory(shard_store("{backbone}", "{imageset}", "{shard}")),
    log:
        f"{RESULTS}/logs/features/{{backbone}}/{{imageset}}/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/features/{{backbone}}/{{imageset}}/{{shard}}.tsv"
    conda:
        ENV
    # One core by default: jobs of small models gain little from a second, and on a 2-core
    # machine the first backbone's stores are extracted while the second still trains.
    threads: config["extraction"]["threads"]
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=int(config["extraction"]["device"] == "cuda"),
    params:
        backbone=backbone_config,
        extraction=extraction_settings,
        images_per_shard=config["extraction"]["images_per_shard"],
        code=code_hash(
            "extract",
            "backbones",
            "store",
            "devices",
            "workers",
            "metrics",
            "tables",
            "data",
            "io",
            "_compat",
        ),
    script:
        "../workflow_scripts/extract.py"


# The shards of an image set read as one store, and the backbone's accuracy on it.
rule gather_features:
    input:
        images=image_store("{imageset}"),
        shards=lambda wildcards: [
            shard_store(wildcards.backbone, wildcards.imageset, shard) for shard in SHARDS
        ],
    output:
        store=directory(features_of("{backbone}", "{imageset}")),
        metrics=f"{RESULTS}/features/{{backbone}}/{{imageset}}.metrics.json",
    log:
        f"{RESULTS}/logs/features/{{backbone}}/{{imageset}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/features/{{backbone}}/{{imageset}}.tsv"
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        accuracy=accuracy_written,
        code=code_hash("extract", "store", "metrics", "tables", "data", "io", "workers"),
    script:
        "../workflow_scripts/gather_features.py"
