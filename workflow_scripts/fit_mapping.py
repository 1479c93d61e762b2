"""Fit one mapping cell (a baseline, a closed form or a trained mapping) and score it on every
split."""

import sys

from featlab.mapping.cells import CellStores, Fit, fit_cell

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

w = snakemake.wildcards
stores = CellStores(
    snakemake.input.original, snakemake.input.manipulated, snakemake.input.images, w.layer
)
cell = dict(backbone=w.backbone, manipulation=w.manipulation)
outputs = dict(snakemake.output.items())
fit_cell(
    stores, Fit(**snakemake.params.fit), cell, outputs, snakemake.params.training, snakemake.threads
)
