"""Planning a large study: the dry run's wall time with sharded extraction, in one run against the
same study extracted in one shard per image set, and with `--files`, against the same plan made
with the data set's files present, whose manifest the workflow stats to track them.

The study is a preset (by default configs/featmap_cars.yaml: two backbones, twelve manipulations,
the mapping zoo, FeatInv) with data.n_images set to the image count, so it plans without the data.
With `--files` the bench also writes a file list of that many empty image files (the manifest
stats the files and never opens them) in ImageNet's layout, 1,000 class folders, and plans from it;
it prints the manifest's own cost per file, measured in this process (featlab.data.sources.survey).
Run from the repository root:

    .venv/bin/python bench/bench_dag.py --images 50000 --per-shard 1000
    .venv/bin/python bench/bench_dag.py --preset configs/featinv_imagenet.yaml \
        --images 1331167 --per-shard 2000 --files
"""

import argparse
import csv
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from featlab.data.sources import survey

CLASSES = 1000  # class folders of the written file list, as in ImageNet


def dry_run(config: dict, folder: Path, name: str) -> tuple[float, float, int]:
    """Wall and CPU (user + system) seconds of `snakemake -n` for the config, and the number of
    jobs it plans. Planning runs in one process, so on an idle machine the two agree; where other
    work shares the cores, the CPU seconds are the planning's own cost."""
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    snakemake = Path(sys.executable).with_name("snakemake")
    command = [str(snakemake), "-n", "--quiet", "rules", "--configfile", str(path)]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    jobs = int(re.search(r"^total\s+(\d+)", result.stdout, re.MULTILINE).group(1))
    return seconds, cpu, jobs


def write_file_list(folder: Path, n_images: int) -> Path:
    """A CSV of n_images empty image files in CLASSES class folders, a tenth of them test."""
    rows = []
    for index in range(n_images):
        label = index % CLASSES
        relative = f"images/n{label:04d}/{index:07d}.JPEG"
        rows.append((relative, label, "test" if index % 10 == 0 else "train"))
    for label in range(CLASSES):
        (folder / "images" / f"n{label:04d}").mkdir(parents=True)
    for relative, _, _ in rows:
        (folder / relative).touch()
    path = folder / "list.csv"
    with path.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(("path", "label", "split"))
        writer.writerows(rows)
    return path


def manifest_cost(data: dict) -> None:
    """Print the listing's CPU time with and without the manifest, and the manifest's per file."""
    start = time.process_time()
    listed = survey(data)
    listing = time.process_time() - start
    start = time.process_time()
    survey(data, manifest=True)
    both = time.process_time() - start
    per_file = (both - listing) / listed.n_images * 1e6
    print(
        f"CPU s: listing {listing:.1f}, listing and manifest {both:.1f}: the manifest "
        f"{per_file:.2f} us per file"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50000)
    parser.add_argument("--per-shard", type=int, default=1000)
    parser.add_argument("--preset", default="configs/featmap_cars.yaml")
    parser.add_argument("--files", action="store_true", help="also plan with the files present")
    args = parser.parse_args()
    config = yaml.safe_load(Path(args.preset).read_text())
    config["data"]["n_images"] = args.images
    print(f"{args.preset} with {args.images} images")
    with tempfile.TemporaryDirectory() as folder:
        runs = [("without the data", config["data"])]
        if args.files:
            start = time.perf_counter()
            path = write_file_list(Path(folder), args.images)
            print(f"wrote the file list and its files in {time.perf_counter() - start:.0f} s")
            present = {**config["data"], "source": "filelist", "filelist": {"path": str(path)}}
            manifest_cost(present)
            runs.append(("files present", present))
        print(f"{'extraction':<28}{'data':<18}{'jobs':>7}{'dry run s':>11}{'CPU s':>8}")
        for label, per_shard in (
            ("one shard per image set", args.images),
            (f"{args.per_shard} images per shard", args.per_shard),
        ):
            config["extraction"]["images_per_shard"] = per_shard
            for data_label, data in runs:
                name = f"shard{per_shard}_{len(data_label)}"
                seconds, cpu, jobs = dry_run({**config, "data": data}, Path(folder), name)
                print(f"{label:<28}{data_label:<18}{jobs:>7}{seconds:>11.1f}{cpu:>8.1f}")


if __name__ == "__main__":
    main()
