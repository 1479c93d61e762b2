"""Draw a backbone's random weights once for the study (weights: random) and save them."""

import sys

from featlab.backbones import BackboneSpec, init_backbone, save_backbone

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

spec = BackboneSpec(**snakemake.params.backbone)
model = init_backbone(spec, snakemake.params.seed)
save_backbone(model, spec, snakemake.output.weights, {"seed": snakemake.params.seed})
