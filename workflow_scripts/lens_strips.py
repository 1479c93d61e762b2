"""Draw the frame strip and the animated GIF of every lens case of one driving backbone."""

import sys

from featlab.plots import draw_strip, write_gif

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

inputs, outputs = snakemake.input, snakemake.output
for frames, morphs, strip, gif in zip(
    inputs.frames, inputs.morphs, outputs.strips, outputs.gifs, strict=True
):
    draw_strip(frames, morphs, strip)
    write_gif(frames, morphs, gif)
