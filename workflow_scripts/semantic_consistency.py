"""Run the rest of the backbone on every mapping's features of one layer and score its outputs."""

import sys

from featlab.backbones import BackboneSpec, build_backbone
from featlab.io import write_json
from featlab.mapping.semantic import SemanticSettings, semantic_consistency
from featlab.tables import without_accuracy

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

w = snakemake.wildcards
spec = BackboneSpec(**snakemake.params.backbone)
model = build_backbone(spec, weights_path=snakemake.input.weights or spec.weights_path)
settings = SemanticSettings(**snakemake.params.semantic, threads=snakemake.threads)
original = {"features": snakemake.input.original, "images": snakemake.input.images}
rows = semantic_consistency(model, w.layer, original, snakemake.params.plan, settings, w.backbone)
# Accuracy against labels of another label space would mean nothing (labels_match_head).
write_json(snakemake.output[0], rows if snakemake.params.accuracy else without_accuracy(rows))
