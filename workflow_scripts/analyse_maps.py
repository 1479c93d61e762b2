"""Linear-structure analysis (norms, bias share, SVD, rank-k curve) of one layer's affine maps."""

import sys

from featlab.io import write_json
from featlab.mapping.analysis import AnalysisSettings, analyse_layer

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

w = snakemake.wildcards
settings = AnalysisSettings(**snakemake.params.analysis)
original = {"features": snakemake.input.original}
rows = analyse_layer(original, snakemake.params.plan, w.layer, settings, w.backbone)
write_json(snakemake.output[0], rows)
