"""Score a no-fit baseline (identity or the exact spatial op) on one layer and manipulation."""

import sys

from featlab.geometry import spatial_op_of
from featlab.io import write_json
from featlab.mapping.fit import baseline, evaluate
from featlab.mapping.pairs import open_pair

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

w = snakemake.wildcards
pair = open_pair(
    snakemake.input.original, snakemake.input.manipulated, snakemake.input.images, w.layer
)
apply = baseline(w.mapping, spatial_op_of(snakemake.params.spec))
base = dict(stage="mapping", backbone=w.backbone, layer=w.layer, manipulation=w.manipulation)
rows = evaluate(pair, apply, {**base, "mapping": w.mapping, "comparison": "mapped_vs_manipulated"})
write_json(snakemake.output.metrics, rows)
