# A backbone trained as a classifier on the original train split (weights: train).
rule train_backbone:
    input:
        study.images("original"),
    output:
        weights=study.model("{backbone}", "model.safetensors"),
        config=study.model("{backbone}", "model.json"),
    log:
        study.log(study.model("{backbone}")),
    benchmark:
        study.benchmark(study.model("{backbone}"))
    wildcard_constraints:
        backbone=one_of(study.backbones_with("train")),
    conda:
        ENV
    # Small models and batches: one core each trains them nearly as fast as two, and both
    # backbones train side by side.
    threads: 1
    resources:
        mem_mb=4000,
        runtime=60,
    params:
        backbone=backbone_of,
        train=train_of,
        code=study.code("train_backbone"),
    script:
        "../workflow_scripts/train_backbone.py"


# A backbone's random weights (weights: random), drawn once from its seed: every job of the
# study reads this one network, and the feature stores record its sha256.
rule init_backbone:
    output:
        weights=study.model("{backbone}", "model.safetensors"),
        config=study.model("{backbone}", "model.json"),
    log:
        study.log(study.model("{backbone}")),
    benchmark:
        study.benchmark(study.model("{backbone}"))
    wildcard_constraints:
        backbone=one_of(study.backbones_with("random")),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        backbone=backbone_of,
        seed=seed_of,
        code=study.code("init_backbone"),
    script:
        "../workflow_scripts/init_backbone.py"


# One shard of an image set (extraction.images_per_shard images) through one backbone: all
# configured layers and the logits in one pass.
rule extract:
    input:
        images=study.images("{imageset}"),
        weights=weights_of,
    output:
        store=directory(study.feature_shard("{backbone}", "{imageset}", "{shard}")),
    log:
        study.log(study.feature_shard("{backbone}", "{imageset}", "{shard}")),
    benchmark:
        study.benchmark(study.feature_shard("{backbone}", "{imageset}", "{shard}"))
    conda:
        ENV
    # One core by default: jobs of small models gain little from a second, and on a 2-core
    # machine the first backbone's stores are extracted while the second still trains.
    threads: config["extraction"]["threads"]
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=gpus(config["extraction"]["device"]),
    params:
        backbone=backbone_of,
        extraction=extraction_of,
        images_per_shard=config["extraction"]["images_per_shard"],
        code=study.code("extract"),
    script:
        "../workflow_scripts/extract.py"


# The shards of an image set read as one store, and the backbone's accuracy on it.
rule gather_features:
    input:
        images=study.images("{imageset}"),
        shards=feature_shards_of,
    output:
        store=directory(study.features("{backbone}", "{imageset}")),
        metrics=study.features("{backbone}", "{imageset}", ".metrics.json"),
    log:
        study.log(study.features("{backbone}", "{imageset}")),
    benchmark:
        study.benchmark(study.features("{backbone}", "{imageset}"))
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        accuracy=accuracy_of,
        code=study.code("gather_features"),
    script:
        "../workflow_scripts/gather_features.py"
