"""The tiny study run through the real Snakefile, shared by the workflow and report tests."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
TINY = REPO / "tests" / "data" / "tiny.yaml"
# What a workflow run needs from the checkout (results/ and caches stay behind), with
# profiles/default, the settings of the README's command.
WORKFLOW_FILES = (
    "Snakefile",
    "rules",
    "workflow_scripts",
    "envs",
    "schemas",
    "report",
    "src",
    "profiles",
)


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run snakemake on the workflow copied into `workdir`, with the config in `workdir`."""
    # --configfile takes a list: anything after it (a target) would be read as another config file.
    command = [str(SNAKEMAKE), *args, "--cores", "2", "--configfile", "config.yaml"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {args} failed:\n{result.stdout[-4000:]}{result.stderr}")
    return result


def planned_jobs(workdir: Path, *targets: str) -> list[dict]:
    """The jobs a dry run would execute (for `targets`, or the whole study): rule name, inputs
    and outputs of each."""
    text = snakemake(workdir, *targets, "--dry-run").stdout
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", text):
        header = re.match(r"(?:local)?rule (\w+):", block)
        if header is None:
            continue
        fields = dict(re.findall(r"^\s+(input|output): (.*)$", block, flags=re.MULTILINE))
        jobs.append(
            {
                "rule": header.group(1),
                "input": set(fields.get("input", "").split(", ")) - {""},
                "output": set(fields.get("output", "").split(", ")) - {""},
            }
        )
    return jobs


def copy_workflow(workdir: Path) -> None:
    """Copy what a workflow run needs from the checkout into `workdir`."""
    for name in WORKFLOW_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, workdir / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, workdir / name)


def run_tiny_study(workdir: Path) -> dict:
    """Copy the workflow into `workdir`, plan the tiny study, and run it to the end."""
    copy_workflow(workdir)
    shutil.copy2(TINY, workdir / "config.yaml")
    plan = planned_jobs(workdir)
    snakemake(workdir)
    return {"dir": workdir, "plan": plan, "config": yaml.safe_load(TINY.read_text())}
