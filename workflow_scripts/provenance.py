"""Record what produced the study: resolved config, featlab version and commit, package versions."""

import sys

from featlab.io import write_json
from featlab.provenance import provenance
from featlab.store import FeatureStore

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

features = snakemake.input.features
weights = {
    name: FeatureStore(path).attrs.get("weights_sha256")
    for name, path in zip(snakemake.params.backbones, features, strict=True)
}
record = provenance(snakemake.params.config, snakemake.params.git, weights)
write_json(snakemake.output[0], record)
