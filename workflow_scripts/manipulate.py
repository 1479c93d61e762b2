"""Write one manipulated image set, in the original's image order, with its change masks."""

import sys

from featlab.data.images import ImageStore
from featlab.data.shapes import Scene
from featlab.io import read_json
from featlab.manipulate import MaskSettings, manipulate_store

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

# Counterfactuals re-render the shapes world's scenes; real photos have none.
scenes = None
if snakemake.input.scenes:
    scenes = [Scene.from_dict(values) for values in read_json(snakemake.input.scenes)]
manipulate_store(
    ImageStore(snakemake.input.original),
    snakemake.output[0],
    dict(snakemake.params.spec),
    scenes=scenes,
    mask_settings=MaskSettings(**snakemake.params.mask),
)
