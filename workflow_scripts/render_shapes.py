"""Render the shapes world's original image set."""

import sys

from featlab.data.images import write_image_store
from featlab.data.shapes import ShapesSettings, render_image_set
from featlab.io import write_json

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

settings = ShapesSettings(**snakemake.params.shapes)
image_set, scenes = render_image_set(settings)
write_json(snakemake.output.scenes, [scene.to_dict() for scene in scenes])
write_image_store(
    snakemake.output.store, image_set, attrs={"source": "shapes", "shapes": snakemake.params.shapes}
)
