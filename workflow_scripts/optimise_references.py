"""Invert the true features of test images, and the controls, by optimisation; score them."""

import sys

from featlab.backbones import BackboneSpec, build_backbone
from featlab.featinv import evaluate
from featlab.featinv.optimise import OptimiseSettings
from featlab.io import write_json

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

w, inputs, params = snakemake.wildcards, snakemake.input, snakemake.params
settings = evaluate.InvertSettings(**params.invert)
optimising = OptimiseSettings(**params.optimise, threads=snakemake.threads)
backbone = build_backbone(BackboneSpec(**params.backbone), inputs.weights or None)
inverter, data, indices = evaluate.open_optimisation(
    backbone, w.layer, inputs, optimising, settings.n_images, params.resolution
)
base = dict(backbone=w.backbone, layer=w.layer, manipulation=w.manipulation)
rows, images = evaluate.invert_references(inverter, data, settings, base, params.baselines)
write_json(snakemake.output.metrics, rows)
evaluate.save_images(snakemake.output.images, images, indices)
