"""Planning a 50,000-image study: the dry run's wall time with sharded extraction, in one run
against the same study extracted in one shard per image set.

The study is configs/featmap_cars.yaml (two backbones, twelve manipulations, the mapping zoo,
FeatInv) with data.n_images set to the image count, so it plans without the data. Run from the
repository root:

    .venv/bin/python bench/bench_dag.py --images 50000 --per-shard 1000
"""

import argparse
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def dry_run(config: dict, folder: Path, name: str) -> tuple[float, int]:
    """Seconds of `snakemake -n` for the config, and the number of jobs it plans."""
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    snakemake = Path(sys.executable).with_name("snakemake")
    command = [str(snakemake), "-n", "--quiet", "rules", "--configfile", str(path)]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    return seconds, int(re.search(r"^total\s+(\d+)", result.stdout, re.MULTILINE).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=50000)
    parser.add_argument("--per-shard", type=int, default=1000)
    parser.add_argument("--preset", default="configs/featmap_cars.yaml")
    args = parser.parse_args()
    config = yaml.safe_load(Path(args.preset).read_text())
    config["data"]["n_images"] = args.images
    print(f"{args.preset} with {args.images} images")
    print(f"{'extraction':<28}{'jobs':>7}{'dry run s':>11}")
    with tempfile.TemporaryDirectory() as folder:
        for label, per_shard in (
            ("one shard per image set", args.images),
            (f"{args.per_shard} images per shard", args.per_shard),
        ):
            config["extraction"]["images_per_shard"] = per_shard
            seconds, jobs = dry_run(config, Path(folder), f"shard{per_shard}")
            print(f"{label:<28}{jobs:>7}{seconds:>11.1f}")


if __name__ == "__main__":
    main()
