"""Draw a layer's neuron grid: each decoded filter by substitution above its deconvolution."""

import sys

from featlab.filters import DecodedLayer
from featlab.plots import PlotSettings, plot_filter_grid

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

w = snakemake.wildcards
decoded = DecodedLayer.load(snakemake.input[0])
title = f"{w.backbone} · {w.layer}: footprint {decoded.footprint.size[0]} px"
settings = PlotSettings(**snakemake.params.plots)
plot_filter_grid(
    decoded.filters, decoded.channels, decoded.fidelity, snakemake.output[0], settings, title
)
