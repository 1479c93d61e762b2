"""The mapping stage's two job layouts on the same cells, in one run: one job per cell
(`featmap.jobs: per_cell`) against a job per group of a cell's mappings (`batched`).

From a study whose features exist (after `make demo`, or `snakemake --until gather_features`),
each layout runs in its own copy of the workflow, whose results folder holds hard links to the
study's images, models and features (nothing is copied), with `--rerun-triggers mtime` so that
only the mapping jobs run. The targets are every mapping cell of the chosen manipulations (all by
default). Prints each layout's cells and wall time, their ratio, and whether the two layouts
wrote the same rows (they must: the same fits, seeded alike). Run from the repository root:

    .venv/bin/python bench/bench_mapping_jobs.py --config config.yaml --cores 2 \
        --manipulations rot90 hue60 swap_class
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from snakemake.utils import validate

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from featlab.study import Study  # noqa: E402

WORKFLOW = ("Snakefile", "rules", "workflow_scripts", "schemas", "envs", "report", "src")
LAYOUTS = ("per_cell", "batched")
UPSTREAM = ("images", "models", "features")  # what the mapping jobs read


def prepare(workdir: Path, root: str, results: Path, config: dict) -> None:
    """A copy of the workflow in `workdir` whose results folder `root` links the upstream
    outputs of `results`."""
    workdir.mkdir(parents=True)
    for name in WORKFLOW:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, workdir / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, workdir / name)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    for stage in UPSTREAM:
        if (results / stage).exists():
            shutil.copytree(results / stage, workdir / root / stage, copy_function=os.link)


def run(workdir: Path, targets: list[str], cores: int) -> float:
    """Run the mapping jobs of `targets`; their wall time in seconds."""
    command = [str(Path(sys.executable).parent / "snakemake"), *targets, "--cores", str(cores)]
    command += ["--rerun-triggers", "mtime", "--quiet", "all", "--configfile", "config.yaml"]
    start = time.perf_counter()
    result = subprocess.run(
        command,
        cwd=workdir,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"snakemake failed in {workdir}:\n{result.stderr[-4000:]}")
    return seconds


def rows_of(workdir: Path, targets: list[str]) -> list[dict]:
    """Every row of the targets' metrics files, in target order."""
    return [row for target in targets for row in json.loads((workdir / target).read_text())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config.yaml", help="the study's config file")
    parser.add_argument("--manipulations", nargs="+", help="these manipulations' cells only")
    parser.add_argument("--cores", type=int, default=2, help="snakemake --cores")
    parser.add_argument("--results", help="the study's results folder (default: its own)")
    args = parser.parse_args()
    config = yaml.safe_load(Path(args.config).read_text())
    validate(config, str(REPO / "schemas" / "config.schema.yaml"))
    study = Study.plan(config, REPO)
    results = Path(args.results or REPO / study.root).resolve()
    if not (results / "features").exists():
        raise SystemExit(f"{results}/features is missing: make the study's features first")
    targets = study.mapping_metrics(args.manipulations)
    seconds, rows = {}, {}
    # beside the results, so that the hard links stay on one file system
    with tempfile.TemporaryDirectory(dir=results.parent) as scratch:
        for layout in LAYOUTS:
            workdir = Path(scratch) / layout
            variant = {**config, "featmap": {**config.get("featmap", {}), "jobs": layout}}
            prepare(workdir, study.root, results, variant)
            seconds[layout] = run(workdir, targets, args.cores)
            rows[layout] = rows_of(workdir, targets)
            print(f"{layout:<10}{len(targets):>6} cells {seconds[layout]:>8.1f} s", flush=True)
    print(f"per_cell / batched: {seconds['per_cell'] / seconds['batched']:.2f}x")
    same = rows["per_cell"] == rows["batched"]
    print(f"same rows in both layouts: {same} ({len(rows['batched'])} rows)")


if __name__ == "__main__":
    main()
