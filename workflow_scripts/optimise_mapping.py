"""Invert one mapping's features of test images by optimisation; score them like FeatInv's."""

import sys

from featlab.backbones import BackboneSpec, build_backbone
from featlab.featinv import evaluate
from featlab.featinv.optimise import OptimiseSettings
from featlab.geometry import spatial_op_of
from featlab.io import write_json
from featlab.mapping.models import mapping_function

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

w, inputs, params = snakemake.wildcards, snakemake.input, snakemake.params
settings = evaluate.InvertSettings(**params.invert)
apply, _ = mapping_function(w.mapping, inputs.map or None, spatial_op_of(params.spec))
optimising = OptimiseSettings(**params.optimise, threads=snakemake.threads)
backbone = build_backbone(BackboneSpec(**params.backbone), inputs.weights or None)
inverter, data, indices = evaluate.open_optimisation(
    backbone, w.layer, inputs, optimising, settings.n_images, params.resolution
)
references = evaluate.load_images(inputs.references, indices)
base = dict(backbone=w.backbone, layer=w.layer, manipulation=w.manipulation, mapping=w.mapping)
rows, images = evaluate.invert_mapping(inverter, data, references, apply, settings, base)
write_json(snakemake.output.metrics, rows)
evaluate.save_images(snakemake.output.images, images, indices)
