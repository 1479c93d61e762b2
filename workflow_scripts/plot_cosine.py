"""Draw test cosine by layer, manipulation and mapping from the metrics table."""

import sys

import pandas as pd

from featlab.plots import PlotSettings, plot_cosine_by_layer

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

table = pd.read_csv(snakemake.input[0], keep_default_na=False, na_values=[""])
plot_cosine_by_layer(table, snakemake.output[0], PlotSettings(**snakemake.params.plots))
