if config["data"]["source"] == "shapes":

    # The original images: one seeded shapes-world scene per image, split into train and test.
    rule render_shapes:
        output:
            store=directory(image_store("original")),
            scenes=f"{RESULTS}/images/original.scenes.json",
        log:
            f"{RESULTS}/logs/images/original.log",
        benchmark:
            f"{RESULTS}/benchmarks/images/original.tsv"
        conda:
            ENV
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        params:
            shapes=config["data"]["shapes"],
            code=code_hash("data", "io", "workers"),
        script:
            "../workflow_scripts/render_shapes.py"

else:

    # The original images of an image folder or file list, resized and centre-cropped to one size.
    rule prepare_images:
        output:
            store=directory(image_store("original")),
        log:
            f"{RESULTS}/logs/images/original.log",
        benchmark:
            f"{RESULTS}/benchmarks/images/original.tsv"
        conda:
            ENV
        threads: config["data"]["workers"] + 1  # the decoding workers and the writer
        resources:
            mem_mb=4000,
            runtime=240,
        params:
            data=data_settings(),
            images=IMAGE_MANIFEST,
            models=[backbone["model"] for backbone in config["backbones"].values()],
            code=code_hash("data", "io", "workers", "_compat"),
        script:
            "../workflow_scripts/prepare_images.py"


# One manipulated image set per configured manipulation, in the original's image order.
rule manipulate:
    input:
        original=image_store("original"),
        scenes=shapes_scenes,
    output:
        directory(image_store("{manipulation}")),
    log:
        f"{RESULTS}/logs/images/{{manipulation}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/images/{{manipulation}}.tsv"
    wildcard_constraints:
        manipulation=one_of(COMPUTED),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        spec=manipulation_spec,
        mask=config["change_mask"],
        code=code_hash(*COMPUTED_CODE, "geometry", "data", "io", "workers"),
    script:
        "../workflow_scripts/manipulate.py"


# A semantic manipulation's generative edits of one shard of the original images
# (editing.images_per_shard): the editor is loaded once per job, and a cluster runs the shards
# side by side.
rule edit_images:
    input:
        original=image_store("original"),
    output:
        directory(edit_shard_store("{manipulation}", "{shard}")),
    log:
        f"{RESULTS}/logs/images/{{manipulation}}/{{shard}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/images/{{manipulation}}/{{shard}}.tsv"
    wildcard_constraints:
        manipulation=one_of(EDITED),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=config["editing"]["mem_mb"],
        runtime=240,
        gpu=int(config["editing"]["device"] == "cuda"),
    params:
        spec=manipulation_spec,
        editing=editing_settings(),
        images_per_shard=config["editing"]["images_per_shard"],
        mask=config["change_mask"],
        code=code_hash(*EDIT_CODE, "devices", "_compat", "data/images", "io"),
    script:
        "../workflow_scripts/edit_images.py"


# The edit shards joined into the manipulation's image set, in the original's image order.
rule gather_edits:
    input:
        shards=lambda wildcards: [
            edit_shard_store(wildcards.manipulation, shard) for shard in EDIT_SHARDS
        ],
    output:
        directory(image_store("{manipulation}")),
    log:
        f"{RESULTS}/logs/images/{{manipulation}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/images/{{manipulation}}.tsv"
    wildcard_constraints:
        manipulation=one_of(EDITED),
    conda:
        ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    params:
        code=code_hash(*EDIT_CODE, "data/images", "io"),
    script:
        "../workflow_scripts/gather_edits.py"
