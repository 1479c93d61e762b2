"""Draw one cell's inversion grid: the images, and each inverter's reconstructions side by side."""

import sys

from featlab.featinv.evaluate import load_grid
from featlab.plots import PlotSettings, plot_featinv_grid

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

w = snakemake.wildcards
references, mapped = load_grid(dict(snakemake.input.items()))
title = f"{w.backbone} · {w.layer}: {w.manipulation}"
settings = PlotSettings(**snakemake.params.plots)
plot_featinv_grid(references, mapped, snakemake.output[0], settings, title, snakemake.params.rows)
