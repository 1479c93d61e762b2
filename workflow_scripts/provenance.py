"""Record what produced the study: resolved config, featlab version and commit, package versions."""

import sys

from featlab.io import write_json
from featlab.provenance import provenance

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

record = provenance(snakemake.params.config, snakemake.params.git)
write_json(snakemake.output[0], record)
