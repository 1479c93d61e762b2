"""Join every stage's metrics files into the study's tidy metrics table."""

import sys

from featlab.io import atomic_path
from featlab.tables import aggregate

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

table = aggregate(snakemake.input, snakemake.params.study)
with atomic_path(snakemake.output[0]) as temporary:
    table.to_csv(temporary, index=False)
