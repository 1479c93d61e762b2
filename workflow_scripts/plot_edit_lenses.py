"""Draw one cell's two lenses side by side: the input-space morph and the reconstruction of the
feature-space lens at the morph's feature-space norm."""

import sys

from safetensors.numpy import load_file

from featlab.plots import PlotSettings, plot_edit_lenses

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

w = snakemake.wildcards
images = load_file(snakemake.input[0])
title = f"{w.backbone} · {w.layer}: {w.manipulation}\ntwo lenses toward the target"
plot_edit_lenses(images, snakemake.output[0], PlotSettings(**snakemake.params.plots), title)
