"""Train a mapping model with the FeatMap recipe and score it on the train, val and test splits."""

import sys

from featlab.io import write_json
from featlab.mapping.fit import evaluate
from featlab.mapping.pairs import open_pair
from featlab.mapping.train import TrainSettings, train_mapping

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

w = snakemake.wildcards
settings = TrainSettings(**snakemake.params.training, threads=snakemake.threads)
view = open_pair(
    snakemake.input.original,
    snakemake.input.manipulated,
    snakemake.input.images,
    w.layer,
    spatial_op=snakemake.params.spatial_op,  # applied to the originals first, or None
    val_fraction=settings.val_fraction,
    seed=settings.seed,
)
trained = train_mapping(view, w.mapping, snakemake.params.settings, settings)
trained.save(snakemake.output.model)
write_json(snakemake.output.history, trained.history)
base = dict(stage="mapping", backbone=w.backbone, layer=w.layer, manipulation=w.manipulation)
rows = evaluate(
    view, trained.apply_maps, {**base, "mapping": w.mapping, "comparison": view.comparison}
)
write_json(snakemake.output.metrics, rows)
