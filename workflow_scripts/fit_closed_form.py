"""Fit a closed-form map (ridge, Procrustes, or their relative-error fits) on the train split and
score it on every split."""

import sys

from featlab.io import write_json
from featlab.mapping.fit import ClosedFormSettings, evaluate, fit_closed_form, save_affine
from featlab.mapping.pairs import open_pair

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

w = snakemake.wildcards
settings = ClosedFormSettings(**snakemake.params.settings)
spatial_op = snakemake.params.spatial_op  # applied to the originals first, or None
view = open_pair(
    snakemake.input.original,
    snakemake.input.manipulated,
    snakemake.input.images,
    w.layer,
    spatial_op,
)
affine = fit_closed_form(view, w.mapping, settings)
config = {"mapping": w.mapping, "layer": w.layer, "spatial_op": spatial_op or "", **vars(settings)}
save_affine(snakemake.output.model, affine, config)
base = dict(stage="mapping", backbone=w.backbone, layer=w.layer, manipulation=w.manipulation)
rows = evaluate(
    view, affine.apply_maps, {**base, "mapping": w.mapping, "comparison": view.comparison}
)
write_json(snakemake.output.metrics, rows)
