"""Fit a closed-form map (ridge, Procrustes) on the train split and score it on every split."""

import sys

from featlab.io import write_json
from featlab.mapping.fit import (
    ClosedFormSettings,
    LayerPair,
    evaluate,
    fit_closed_form,
    save_affine,
)

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

w = snakemake.wildcards
settings = ClosedFormSettings(**snakemake.params.settings)
pair = LayerPair.open(
    snakemake.input.original, snakemake.input.manipulated, snakemake.input.images, w.layer
)
affine = fit_closed_form(pair, w.mapping, settings)
save_affine(
    snakemake.output.model, affine, {"mapping": w.mapping, "layer": w.layer, **vars(settings)}
)
base = dict(stage="mapping", backbone=w.backbone, layer=w.layer, manipulation=w.manipulation)
rows = evaluate(
    pair, affine.apply_maps, {**base, "mapping": w.mapping, "comparison": "mapped_vs_manipulated"}
)
write_json(snakemake.output.metrics, rows)
