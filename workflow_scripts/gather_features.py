"""Join the extraction shards of an image set into one store and score the backbone on it."""

import sys

from featlab.data.images import ImageStore
from featlab.extract import classifier_rows
from featlab.io import write_json
from featlab.store import gather_shards

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

images = ImageStore(snakemake.input.images)
gather_shards(snakemake.output.store, snakemake.input.shards, len(images))
rows = classifier_rows(
    snakemake.output.store,
    images,
    snakemake.wildcards.backbone,
    snakemake.wildcards.imageset,
)
write_json(snakemake.output.metrics, rows)
