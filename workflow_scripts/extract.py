"""Extract one backbone's layer features and logits for one image set."""

import sys

from featlab.backbones import BackboneSpec, build_backbone, sha256_of
from featlab.data.images import ImageStore
from featlab.extract import ExtractSettings, classifier_rows, extract_features
from featlab.io import write_json

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

spec = BackboneSpec(**snakemake.params.backbone)
weights = snakemake.input.weights or spec.weights_path
model = build_backbone(spec, weights_path=weights or None)
images = ImageStore(snakemake.input.images)
settings = ExtractSettings(**snakemake.params.extraction, threads=snakemake.threads)
provenance = {"weights_sha256": sha256_of(weights) if weights else None}
extract_features(model, spec, images, snakemake.output.store, settings, provenance)

imageset = snakemake.wildcards.imageset
rows = classifier_rows(snakemake.output.store, images, snakemake.wildcards.backbone, imageset)
write_json(snakemake.output.metrics, rows)
