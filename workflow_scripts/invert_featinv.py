"""Invert one mapping's features of test images with FeatInv; score them against the references."""

import sys

from featlab.backbones import BackboneSpec, build_backbone
from featlab.featinv import evaluate
from featlab.featinv.sample import SampleSettings
from featlab.geometry import spatial_op_of
from featlab.io import write_json
from featlab.mapping.models import mapping_function

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

w, inputs = snakemake.wildcards, snakemake.input
settings = evaluate.InvertSettings(**snakemake.params.invert)
sampling = SampleSettings(**snakemake.params.sample, threads=snakemake.threads)
backbone = build_backbone(BackboneSpec(**snakemake.params.backbone), inputs.weights or None)
inverter, data, indices = evaluate.open_inversion(
    inputs.model, backbone, w.layer, inputs, sampling, settings.n_images
)
references = evaluate.load_images(inputs.references, indices)
apply, _ = mapping_function(w.mapping, inputs.map or None, spatial_op_of(snakemake.params.spec))
base = dict(backbone=w.backbone, layer=w.layer, manipulation=w.manipulation, mapping=w.mapping)
rows, images = evaluate.invert_mapping(inverter, data, references, apply, settings, base)
write_json(snakemake.output.metrics, rows)
evaluate.save_images(snakemake.output.images, images, indices)
