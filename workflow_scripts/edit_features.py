"""Magnify, truncate and perturb one cell's learned edits and set the two lenses side by side;
read them with the backbones, invert them with FeatInv where the layer has a model."""

import sys

from featlab.backbones import BackboneSpec, build_backbone
from featlab.edits.lenses import morph_settings, open_reader
from featlab.edits.readings import edit_cell, open_inverter, save_images
from featlab.edits.settings import EditSettings
from featlab.featinv.sample import SampleSettings
from featlab.io import write_json

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

w, inputs, params = snakemake.wildcards, snakemake.input, snakemake.params
settings = EditSettings(**params.edits, threads=snakemake.threads)
lens = morph_settings(params.lens, settings.lens_budget)
model = build_backbone(BackboneSpec(**params.backbone), inputs.weights or None)
inverter = None
if inputs.featinv:
    sampling = SampleSettings(**params.sample, threads=snakemake.threads)
    inverter = open_inverter(inputs.featinv, model, w.layer, inputs.original, sampling)
readers = {  # the other backbones, read for transfer
    name: open_reader(
        spec, getattr(inputs, f"reader_weights_{name}"), getattr(inputs, f"reader_store_{name}")
    )
    for name, spec in params.readers.items()
}
maps = {key.removeprefix("map_"): path for key, path in inputs.items() if key.startswith("map_")}
base = dict(backbone=w.backbone, layer=w.layer, manipulation=w.manipulation)
rows, images, indices = edit_cell(
    model, w.layer, inputs, maps, settings, params.labels_match, base, inverter, lens, readers
)
write_json(snakemake.output.metrics, rows)
save_images(snakemake.output.images, images, indices)
