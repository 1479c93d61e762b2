"""Join the extraction shards of an image set into one store and score the backbone on it
(where its head's classes are the data's)."""

import sys

from featlab.data.images import ImageStore
from featlab.extract import classifier_rows
from featlab.io import write_json
from featlab.store import gather_shards
from featlab.tables import without_accuracy

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

images = ImageStore(snakemake.input.images)
gather_shards(snakemake.output.store, snakemake.input.shards, len(images))
rows = classifier_rows(
    snakemake.output.store,
    images,
    snakemake.wildcards.backbone,
    snakemake.wildcards.imageset,
)
# Accuracy against labels of another label space would mean nothing (labels_match_head).
write_json(snakemake.output.metrics, rows if snakemake.params.accuracy else without_accuracy(rows))
