"""Draw the target class's probability against alpha for every cell of the edits stage."""

import sys

import pandas as pd

from featlab.plots import PlotSettings, plot_edit_probability

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

table = pd.read_csv(snakemake.input[0], keep_default_na=False, na_values=[""])
plot_edit_probability(table, snakemake.output[0], PlotSettings(**snakemake.params.plots))
