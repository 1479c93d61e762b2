"""Draw FeatInv against the optimiser by layer, against the floor and the ceiling."""

import sys

import pandas as pd

from featlab.plots import PlotSettings, plot_inverters

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

table = pd.read_csv(snakemake.input[0], keep_default_na=False, na_values=[""])
plot_inverters(table, snakemake.output[0], PlotSettings(**snakemake.params.plots))
