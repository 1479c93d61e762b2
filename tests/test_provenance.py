"""Provenance records the config, featlab's version and commit, and the installed versions."""

import datetime
import json
import platform
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import numpy as np
import pytest

import featlab
from featlab.provenance import PACKAGES, git_state, package_versions, provenance

REPO = Path(__file__).resolve().parents[1]
needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(repo: Path, *args: str) -> str:
    # a test repository: an identity of its own, and no signing whatever the global config says
    config = ["-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    command = ["git", "-C", str(repo), *config, *args]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


def test_packages_cover_every_dependency_of_featlab():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[<>=!~\[ ;]", spec)[0].lower() for spec in project["dependencies"]}
    assert names <= set(PACKAGES)


def test_package_versions_are_the_installed_ones_and_none_when_missing():
    versions = package_versions(["numpy", "featlab-no-such-package"])
    assert versions == {"numpy": np.__version__, "featlab-no-such-package": None}


@needs_git
def test_git_state_gives_the_commit_and_notices_edits_and_new_files(tmp_path):
    _git(tmp_path, "init", "--quiet")
    (tmp_path / "Snakefile").write_text("# a workflow\n")
    _git(tmp_path, "add", "Snakefile")
    _git(tmp_path, "commit", "--quiet", "-m", "first")
    commit = _git(tmp_path, "rev-parse", "HEAD")
    assert git_state(tmp_path) == {"commit": commit, "dirty": False}
    (tmp_path / "new.py").write_text("")
    assert git_state(tmp_path) == {"commit": commit, "dirty": True}
    (tmp_path / "new.py").unlink()
    (tmp_path / "Snakefile").write_text("# an edit\n")
    assert git_state(tmp_path) == {"commit": commit, "dirty": True}


@needs_git
def test_git_state_is_none_outside_a_checkout(tmp_path):
    assert git_state(tmp_path) is None


def test_provenance_keeps_the_config_and_names_versions_and_time():
    config = {"study": "tiny", "backbones": {"cnn": {"layers": ["layer2"]}}}
    record = provenance(config, {"commit": "abc123", "dirty": True}, image_manifest="f00d")
    assert record["study"] == "tiny"
    assert record["config"] == config
    assert record["image_manifest"] == "f00d"
    assert record["featlab"] == {"version": featlab.__version__, "commit": "abc123", "dirty": True}
    assert record["python"] == platform.python_version()
    assert record["packages"]["numpy"] == np.__version__
    written = datetime.datetime.fromisoformat(record["written"])
    now = datetime.datetime.now(datetime.UTC)
    assert written.utcoffset() == datetime.timedelta(0)
    assert abs(now - written) < datetime.timedelta(minutes=1)
    assert json.loads(json.dumps(record)) == record  # JSON-ready as it is


def test_provenance_outside_a_checkout_has_null_commit_and_dirty_flag():
    record = provenance({"study": "tiny"}, None)
    assert record["featlab"] == {"version": featlab.__version__, "commit": None, "dirty": None}
