"""Write the original image store of an image folder or file list."""

import sys

from featlab.data.sources import list_entries, prepare_images, resolve_size

sys.stderr = open(snakemake.log[0], "w")  # noqa: SIM115

data = snakemake.params.data
# Where the data set lies comes from the config: params leave it out (featlab.study:
# unlocated), and params.images, the manifest digest of its files, stands for them.
located = snakemake.config["data"]
entries, classes = list_entries(located)
size, crop_pct = resolve_size(data["image_size"], data["crop_pct"], snakemake.params.models)
summary = prepare_images(
    entries,
    snakemake.output.store,
    size,
    crop_pct,
    on_error=data["on_error"],
    workers=snakemake.threads - 1,  # one thread writes the store
    attrs={"source": data["source"], "classes": classes, data["source"]: located[data["source"]]},
    min_side=data["min_side"],
)
print(f"wrote {summary['n_images']} images, skipped {summary['n_skipped']}", file=sys.stderr)
for skipped in summary["skipped"]:
    print(f"skipped {skipped['path']}: {skipped['reason']}", file=sys.stderr)
