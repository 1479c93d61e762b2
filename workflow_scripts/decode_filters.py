"""Decode neurons of one CNN layer into image-space filters by substitution and deconvolution."""

import sys

from featlab.backbones import BackboneSpec, build_backbone, data_config
from featlab.data.images import ImageStore
from featlab.filters import FilterSettings, decode_layer
from featlab.io import write_json

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

w = snakemake.wildcards
spec = BackboneSpec(**snakemake.params.backbone)
model = build_backbone(spec, weights_path=snakemake.input.weights or spec.weights_path)
settings = FilterSettings(**snakemake.params.settings, threads=snakemake.threads)
store = ImageStore(snakemake.input.images)
images = store.images.oindex[store.indices("test")]
decoded = decode_layer(model, w.layer, images, data_config(model), settings)
decoded.save(snakemake.output.filters)
write_json(snakemake.output.metrics, decoded.rows(w.backbone))
