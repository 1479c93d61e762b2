"""Join a semantic manipulation's edit shards into its image store."""

import sys

from featlab.manipulate.generative import gather_edits

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

gather_edits(snakemake.output[0], snakemake.input.shards)
