"""Write one manipulated image set, in the original's image order, with its change masks."""

import sys

from featlab.data.images import ImageSet, ImageStore, write_image_store
from featlab.data.shapes import Scene
from featlab.io import read_json
from featlab.manipulate import MaskSettings, manipulate

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

original = ImageStore(snakemake.input.original).read()
scenes = [Scene.from_dict(values) for values in read_json(snakemake.input.scenes)]
spec = dict(snakemake.params.spec)
result = manipulate(
    original.images,
    original.labels,
    spec,
    scenes=scenes,
    mask_settings=MaskSettings(**snakemake.params.mask),
)
manipulated = ImageSet(
    result.images, result.labels, original.splits, original.image_ids, result.masks
)
write_image_store(snakemake.output[0], manipulated, attrs={"manipulation": spec})
