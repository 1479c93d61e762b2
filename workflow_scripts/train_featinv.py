"""Train a FeatInv model for one backbone layer from its stored features; save its loss curve."""

import sys

from featlab.featinv.model import ModelSettings
from featlab.featinv.train import TrainSettings, train_from_stores
from featlab.io import write_json

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

w = snakemake.wildcards
model_settings = ModelSettings(**snakemake.params.model)
settings = TrainSettings(**snakemake.params.train, threads=snakemake.threads)
curve = train_from_stores(
    snakemake.input.features,
    snakemake.input.images,
    w.layer,
    model_settings,
    settings,
    snakemake.output.model,
    extra={"backbone": w.backbone},
)
write_json(snakemake.output.loss, curve)
