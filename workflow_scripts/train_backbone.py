"""Train a backbone as a classifier of the original train split and save it as safetensors."""

import sys

from featlab.backbones import BackboneSpec
from featlab.classifier import TrainSettings, train_classifier
from featlab.data.images import ImageStore

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

spec = BackboneSpec(**snakemake.params.backbone)
settings = TrainSettings(**snakemake.params.train, threads=snakemake.threads)
trained = train_classifier(spec, ImageStore(snakemake.input[0]), settings)
trained.save(snakemake.output.weights, settings)
