"""Draw the lens summary: target probability, transfer and warp share by method and budget."""

import sys

import pandas as pd

from featlab.plots import PlotSettings, plot_lens_summary

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

table = pd.read_csv(snakemake.input[0], keep_default_na=False, na_values=[""])
plot_lens_summary(table, snakemake.output[0], PlotSettings(**snakemake.params.plots))
