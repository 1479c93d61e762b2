"""Invert the true features of test images, and the controls, with FeatInv; score them."""

import sys

from featlab.backbones import BackboneSpec, build_backbone
from featlab.featinv import evaluate
from featlab.featinv.sample import SampleSettings
from featlab.io import write_json

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

w, inputs = snakemake.wildcards, snakemake.input
settings = evaluate.InvertSettings(**snakemake.params.invert)
sampling = SampleSettings(**snakemake.params.sample, threads=snakemake.threads)
backbone = build_backbone(BackboneSpec(**snakemake.params.backbone), inputs.weights or None)
inverter, data, indices = evaluate.open_inversion(
    inputs.model, backbone, w.layer, inputs, sampling, settings.n_images
)
base = dict(backbone=w.backbone, layer=w.layer, manipulation=w.manipulation)
rows, images = evaluate.invert_references(inverter, data, settings, base)
write_json(snakemake.output.metrics, rows)
evaluate.save_images(snakemake.output.images, images, indices)
