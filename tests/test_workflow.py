"""The real Snakefile on the tiny config: a full run, caching, exact reruns, early config errors."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
TINY = REPO / "tests" / "data" / "tiny.yaml"
# What a workflow run needs from the checkout (results/ and caches stay behind).
WORKFLOW_FILES = ("Snakefile", "rules", "workflow_scripts", "envs", "schemas", "report", "src")

pytestmark = pytest.mark.slow


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Run snakemake on the workflow copied into `workdir`, with the config in `workdir`."""
    command = [str(SNAKEMAKE), "--cores", "2", "--configfile", "config.yaml", *args]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {args} failed:\n{result.stdout[-4000:]}{result.stderr}")
    return result


def planned_jobs(workdir: Path) -> list[dict]:
    """The jobs a dry run would execute: rule name, inputs and outputs of each."""
    text = snakemake(workdir, "--dry-run").stdout
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


def descendants(jobs: list[dict], roots: list[dict]) -> set[str]:
    """Outputs of `roots` and of every job that (transitively) reads one of them."""
    reached = set().union(*(job["output"] for job in roots))
    grew = True
    while grew:
        grew = False
        for job in jobs:
            if job["input"] & reached and not job["output"] <= reached:
                reached |= job["output"]
                grew = True
    return reached


def _outputs(jobs: list[dict]) -> set[str]:
    return set().union(*(job["output"] for job in jobs)) if jobs else set()


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> dict:
    """A copy of the workflow, its full plan, and one complete run of the tiny study."""
    workdir = tmp_path_factory.mktemp("workflow")
    for name in WORKFLOW_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, workdir / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, workdir / name)
    shutil.copy2(TINY, workdir / "config.yaml")
    plan = planned_jobs(workdir)
    snakemake(workdir)
    return {"dir": workdir, "plan": plan, "config": yaml.safe_load(TINY.read_text())}


def test_full_run_writes_the_table_and_figures(study):
    results = study["dir"] / "results" / "tiny"
    table = pd.read_csv(results / "tables" / "metrics.csv", keep_default_na=False)
    assert list(table.columns[:11]) == [
        "study",
        "stage",
        "backbone",
        "layer",
        "manipulation",
        "mapping",
        "comparison",
        "split",
        "metric",
        "value",
        "n",
    ]
    classifier = table[(table.stage == "classifier") & (table.manipulation == "")]
    assert set(classifier.backbone) == set(study["config"]["backbones"])
    test_cosine = table[(table.metric == "cosine_median") & (table.split == "test")]
    for manipulation in study["config"]["manipulations"]:
        mappings = set(test_cosine[test_cosine.manipulation == manipulation].mapping)
        assert {"identity", "ridge"} <= mappings
    for figure in ("cosine_by_layer", "relative_cosine", "linear_structure", "rank_curves"):
        assert (results / "figures" / f"{figure}.png").stat().st_size > 0


def test_featmap_fits_every_mapping_type_where_the_subset_selects(study):
    table = pd.read_csv(
        study["dir"] / "results" / "tiny" / "tables" / "metrics.csv", keep_default_na=False
    )
    fits = table[(table.stage == "mapping") & (table.metric == "cosine_median")]
    subset = fits[(fits.manipulation == "rot90") & (fits.layer == "layer3")]
    assert set(subset.mapping) == set(study["config"]["mappings"])
    elsewhere = set(fits[fits.manipulation != "rot90"].mapping)
    assert elsewhere == {"identity", "ridge", "procrustes"}  # closed form and baselines only
    # spatial_first: Procrustes and the transformer rotate the originals first on rot90
    first = subset[subset.comparison == "mapped_vs_manipulated_spatial_first"]
    assert set(first.mapping) == {"procrustes", "transformer"}
    # semantic consistency of every mapping, and the linear-structure analysis of affine maps
    semantic = table[(table.metric == "top1_agreement") & (table.manipulation == "rot90")]
    assert set(semantic[semantic.layer == "layer3"].mapping) == set(study["config"]["mappings"])
    analysis = table[(table.stage == "analysis") & (table.metric == "effective_rank")]
    assert {"ridge", "procrustes", "linear"} <= set(analysis.mapping)


def test_second_run_has_nothing_to_do(study):
    assert planned_jobs(study["dir"]) == []


def test_reordering_config_keys_reruns_nothing(study):
    workdir = study["dir"]
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    reordered = {key: config[key] for key in reversed(list(config))}
    reordered["manipulations"] = dict(reversed(config["manipulations"].items()))
    (workdir / "config.yaml").write_text(yaml.safe_dump(reordered, sort_keys=False))
    try:
        assert planned_jobs(workdir) == []
    finally:
        shutil.copy2(TINY, workdir / "config.yaml")


def test_changing_one_manipulation_reruns_exactly_its_descendants(study):
    workdir = study["dir"]
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["manipulations"]["noise"]["sigma"] += 5
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    try:
        changed = [job for job in study["plan"] if job["rule"] == "manipulate"]
        changed = [job for job in changed if any("/noise.zarr" in o for o in job["output"])]
        assert len(changed) == 1
        expected = descendants(study["plan"], changed)
        rerun = _outputs(planned_jobs(workdir))
        assert rerun == expected
        assert not any("/rot90" in path or "/swap_class" in path for path in rerun)
    finally:
        shutil.copy2(TINY, workdir / "config.yaml")


def test_editing_the_plotting_code_reruns_only_plotting(study):
    workdir = study["dir"]
    module = workdir / "src" / "featlab" / "plots.py"
    source = module.read_text()
    module.write_text(source + "\n# an edit\n")
    try:
        rules = {job["rule"] for job in planned_jobs(workdir)}
        assert "plot_cosine" in rules
        assert not rules & {"render_shapes", "manipulate", "train_backbone", "extract", "aggregate"}
    finally:
        module.write_text(source)


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda c: c["backbones"]["cnn"].update(layers="layer2"), "layers"),
        (lambda c: c["manipulations"].update(bad={"kind": "melt"}), "kind"),
        (lambda c: c["manipulations"]["rot90"].pop("angle"), "angle"),
        (lambda c: c["data"]["shapes"].update(n_train="many"), "n_train"),
        (lambda c: c.update(colour_scheme="dark"), "colour_scheme"),
    ],
)
def test_bad_config_stops_before_any_job_naming_the_key(tmp_path, edit, key):
    config = yaml.safe_load(TINY.read_text())
    edit(config)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    command = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--cores", "1"]
    command += ["--configfile", "config.yaml", "--dry-run"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode != 0
    assert key in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()
