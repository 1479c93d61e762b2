if config["data"]["source"] == "shapes":

    # The original images: one seeded shapes-world scene per image, split into train and test.
    rule render_shapes:
        output:
            store=directory(study.images("original")),
            scenes=study.scenes(),
        log:
            study.log(study.images("original")),
        benchmark:
            study.benchmark(study.images("original"))
        conda:
            ENV
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            shapes=study.settings("data.shapes"),
            code=study.code("render_shapes"),
        script:
            "../workflow_scripts/render_shapes.py"

else:

    # The original images of an image folder or file list, resized and centre-cropped to one size.
    rule prepare_images:
        output:
            store=directory(study.images("original")),
        log:
            study.log(study.images("original")),
        benchmark:
            study.benchmark(study.images("original"))
        conda:
            ENV
        threads: config["data"]["workers"] + 1  # the decoding workers and the writer
        resources:
            mem_mb=4000,
            runtime=240,
        params:
            data=study.data_settings(),
            # a changed, added or removed image reruns the store and everything after it
            images=study.manifest,
            models=[backbone["model"] for backbone in config["backbones"].values()],
            code=study.code("prepare_images"),
        script:
            "../workflow_scripts/prepare_images.py"


# One manipulated image set per computed manipulation, in the original's image order.
rule manipulate:
    input:
        original=study.images("original"),
        scenes=scenes_of,
    output:
        directory(study.images("{manipulation}")),
    log:
        study.log(study.images("{manipulation}")),
    benchmark:
        study.benchmark(study.images("{manipulation}"))
    wildcard_constraints:
        manipulation=one_of(study.computed),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        spec=spec_of,
        mask=study.settings("change_mask"),
        code=study.code("manipulate"),
    script:
        "../workflow_scripts/manipulate.py"


# A semantic manipulation's generative edits of one shard of the original images
# (editing.images_per_shard): the editor is loaded once per job, and a cluster runs the shards
# side by side.
rule edit_images:
    input:
        original=study.images("original"),
    output:
        directory(study.edit_shard("{manipulation}", "{shard}")),
    log:
        study.log(study.edit_shard("{manipulation}", "{shard}")),
    benchmark:
        study.benchmark(study.edit_shard("{manipulation}", "{shard}"))
    wildcard_constraints:
        manipulation=one_of(study.edited),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=config["editing"]["mem_mb"],
        runtime=240,
        gpu=gpus(config["editing"]["device"]),
    params:
        spec=spec_of,
        editing=study.settings("editing"),
        images_per_shard=config["editing"]["images_per_shard"],
        mask=study.settings("change_mask"),
        code=study.code("edit_images"),
    script:
        "../workflow_scripts/edit_images.py"


# The edit shards joined into the manipulation's image set, in the original's image order.
rule gather_edits:
    input:
        shards=edit_shards_of,
    output:
        directory(study.images("{manipulation}")),
    log:
        study.log(study.images("{manipulation}")),
    benchmark:
        study.benchmark(study.images("{manipulation}"))
    wildcard_constraints:
        manipulation=one_of(study.edited),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        code=study.code("gather_edits"),
    script:
        "../workflow_scripts/gather_edits.py"
