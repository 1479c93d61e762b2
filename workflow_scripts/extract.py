"""Extract one backbone's layer features and logits for one shard of an image set."""

import sys

from featlab.backbones import BackboneSpec, build_backbone, hub_weights_file, sha256_of
from featlab.data.images import ImageStore, shard_range
from featlab.extract import ExtractSettings, extract_features

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

spec = BackboneSpec(**snakemake.params.backbone)
weights = snakemake.input.weights or spec.weights_path
model = build_backbone(spec, weights_path=weights or None)
if spec.weights == "hub":
    weights = hub_weights_file(spec, model)
images = ImageStore(snakemake.input.images)
settings = ExtractSettings(**snakemake.params.extraction)
provenance = {"weights_sha256": sha256_of(weights) if weights else None}

image_range = shard_range(
    int(snakemake.wildcards.shard), snakemake.params.images_per_shard, len(images)
)
extract_features(model, spec, images, snakemake.output.store, settings, provenance, image_range)
