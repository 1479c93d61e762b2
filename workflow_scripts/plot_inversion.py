"""Draw the FeatInv scores: each reconstruction against its references, by mapping."""

import sys

import pandas as pd

from featlab.plots import PlotSettings, plot_inversion_scores

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

table = pd.read_csv(snakemake.input[0], keep_default_na=False, na_values=[""])
plot_inversion_scores(table, snakemake.output[0], PlotSettings(**snakemake.params.plots))
