"""Record what produced the study: resolved config, featlab version and commit, package versions,
and the manifest digest of a real data set's files."""

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
# The whole config, with the data set's location, which params leave out (featlab.study:
# unlocated): a data set moved with its files reruns nothing, and the record says where it was.
record = provenance(snakemake.config, snakemake.params.git, weights, snakemake.params.images)
write_json(snakemake.output[0], record)
