"""Draw one cell's FeatInv grid: the images, and the reconstructions of each mapping's features."""

import sys

from safetensors.numpy import load_file

from featlab.plots import PlotSettings, plot_featinv_grid

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

w = snakemake.wildcards
references = load_file(snakemake.input.references)
mapped = {m: load_file(path)["mapped"] for m, path in snakemake.input.items() if m != "references"}
title = f"{w.backbone} · {w.layer}: {w.manipulation}"
settings = PlotSettings(**snakemake.params.plots)
plot_featinv_grid(references, mapped, snakemake.output[0], settings, title, snakemake.params.rows)
