"""kill -9 the tiny study at several stages, rerun the README command, and compare the results with
an uninterrupted run; and two uninterrupted runs agree (determinism)."""

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from safetensors.numpy import load_file
from tiny_study import SNAKEMAKE, TINY, copy_workflow, run_tiny_study, snakemake

pytestmark = [
    pytest.mark.slow,
    # Snakemake marks a directory output with this file; the stores' readers skip it.
    pytest.mark.filterwarnings("ignore:Object at .snakemake_timestamp"),
]

# The stages to kill, each at the first start of one of its rules, in whatever order they come.
KILL_AT = {
    "extraction": "extract",
    "a fit": "train_mappings",
    "FeatInv training": "train_featinv",
    "aggregation": "aggregate",
}
# How long after a job starts to kill it: its process has imported torch and is computing.
KILL_AFTER_S = 2.0


def run_until_a_rule_starts(workdir: Path, rules: set[str]) -> str | None:
    """Run the study until one of `rules` starts a job, then SIGKILL Snakemake and every job it
    runs; returns the rule killed, or None when the run ended first."""
    command = [str(SNAKEMAKE), "--cores", "2", "--configfile", "config.yaml"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        command,
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own process group, so that the kill reaches every job
    )
    killed = None
    for line in process.stdout:
        started = re.match(r"(?:local)?rule (\w+):$", line.strip())
        if started and started.group(1) in rules:
            time.sleep(KILL_AFTER_S)
            os.killpg(process.pid, signal.SIGKILL)
            killed = started.group(1)
            break
    process.stdout.close()
    process.wait()
    return killed


def complete_stores(results: Path) -> list[Path]:
    """Every Zarr store at a final output path; each must open and read in full."""
    stores = sorted(p for p in results.rglob("*.zarr") if not p.name.startswith("."))
    for store in stores:
        group = zarr.open_group(store, mode="r")  # a half-written store has no zarr.json
        for _, array in group.arrays():
            array[...]
    return stores


def assert_same_results(reference: Path, other: Path) -> None:
    """Equal metrics table (bitwise), equal arrays in every store and safetensors file."""
    table = "tables/metrics.csv"
    assert (other / table).read_bytes() == (reference / table).read_bytes()
    stores = [p.relative_to(reference) for p in complete_stores(reference)]
    assert stores == [p.relative_to(other) for p in complete_stores(other)]
    for store in stores:
        a = zarr.open_group(reference / store, mode="r")
        b = zarr.open_group(other / store, mode="r")
        names = sorted(name for name, _ in a.arrays())
        assert names == sorted(name for name, _ in b.arrays()), store
        for name in names:
            np.testing.assert_array_equal(a[name][...], b[name][...], err_msg=f"{store}/{name}")
    for path in sorted(reference.rglob("*.safetensors")):
        ours = load_file(other / path.relative_to(reference))
        for key, value in load_file(path).items():
            np.testing.assert_array_equal(ours[key], value, err_msg=f"{path}: {key}")


def test_a_study_killed_at_every_stage_finishes_as_if_never_killed(study, tmp_path):
    copy_workflow(tmp_path)
    shutil.copy2(TINY, tmp_path / "config.yaml")
    results = tmp_path / "results" / "tiny"
    waiting, survived = dict(KILL_AT), []
    while waiting:
        killed = run_until_a_rule_starts(tmp_path, set(waiting.values()))
        assert killed is not None, f"the study ended before {sorted(waiting)} could be killed"
        survived += [stage for stage, rule in waiting.items() if rule == killed]
        waiting = {stage: rule for stage, rule in waiting.items() if rule != killed}
        complete_stores(results)  # no half-written store sits at a final path
    assert sorted(survived) == sorted(KILL_AT)
    # The README command, as given: it releases the killed run's locks and finishes the work.
    result = snakemake(tmp_path)
    assert "released the locks" in result.stdout + result.stderr
    assert_same_results(study["dir"] / "results" / "tiny", results)
    leftovers = [p for p in results.rglob(".*.tmp-*")]
    assert leftovers == [], "a killed job's temporary files outlived the rerun"


def test_two_runs_of_the_tiny_study_agree(study, tmp_path):
    """Determinism: the same config and seeds give the same table and stores on a CPU."""
    run_tiny_study(tmp_path)
    assert_same_results(study["dir"] / "results" / "tiny", tmp_path / "results" / "tiny")
