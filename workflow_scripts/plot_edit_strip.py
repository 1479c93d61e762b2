"""Draw one cell's edit strip: reconstructions of its magnified and truncated edits."""

import sys

from safetensors.numpy import load_file

from featlab.plots import PlotSettings, plot_edit_strip

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

w = snakemake.wildcards
images = load_file(snakemake.input[0])
images.pop("image_index")
title = f"{w.backbone} · {w.layer}: {w.manipulation}, x + α E(x)"
plot_edit_strip(images, snakemake.output[0], PlotSettings(**snakemake.params.plots), title)
