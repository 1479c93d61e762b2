"""Edit one shard of the original images with a semantic manipulation's generative editor."""

import sys

from featlab.data.images import ImageStore, shard_range
from featlab.manipulate import MaskSettings
from featlab.manipulate.generative import edit_shard

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

original = ImageStore(snakemake.input.original)
edit_shard(
    original,
    snakemake.output[0],
    dict(snakemake.params.spec),
    dict(snakemake.params.editing),
    shard_range(int(snakemake.wildcards.shard), snakemake.params.images_per_shard, len(original)),
    MaskSettings(**snakemake.params.mask),
)
