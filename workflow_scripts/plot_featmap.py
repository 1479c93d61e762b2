"""Draw the FeatMap analysis figures from the metrics table."""

import sys

import pandas as pd

from featlab.plots import (
    PlotSettings,
    plot_linear_structure,
    plot_rank_curves,
    plot_relative_cosine,
)

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

table = pd.read_csv(snakemake.input[0], keep_default_na=False, na_values=[""])
settings = PlotSettings(**snakemake.params.plots)
plot_relative_cosine(table, snakemake.output.relative, settings)
plot_linear_structure(table, snakemake.output.structure, settings)
plot_rank_curves(table, snakemake.output.ranks, settings)
