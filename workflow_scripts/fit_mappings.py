"""Fit a group of mappings of one layer and manipulation in one process (featmap.jobs: batched),
each cell into its own folder, and score each on every split."""

import sys

from featlab.mapping.cells import FILES, CellStores, Fit, fit_cell, kind_of

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

w = snakemake.wildcards
stores = CellStores(
    snakemake.input.original, snakemake.input.manipulated, snakemake.input.images, w.layer
)
cell = dict(backbone=w.backbone, manipulation=w.manipulation)
for params in snakemake.params.fits:
    fit = Fit(**params)
    outputs = {
        name: snakemake.output[f"{fit.mapping}_{name}"] for name in FILES[kind_of(fit.mapping)]
    }
    fit_cell(stores, fit, cell, outputs, snakemake.params.training, snakemake.threads)
