"""Provenance: what produced a study's results, written beside them as `provenance.json`.

A reader of `results/{study}/` can tell from that one file which config (validated, defaults
filled), which featlab version and commit, and which Python and package versions made the numbers.
"""

import datetime
import importlib.metadata
import os
import platform
import subprocess
from collections.abc import Iterable
from typing import Any

import featlab

# The distributions a study imports: featlab's dependencies (pyproject.toml; a unit test keeps the
# two in step) and the optional ones that some stages use.
PACKAGES = (
    "torch",
    "torchvision",
    "timm",
    "zarr",
    "numpy",
    "pillow",
    "safetensors",
    "scipy",
    "scikit-image",
    "pandas",
    "matplotlib",
    "pyyaml",
    "tqdm",
    "snakemake",
    "diffusers",
    "lpips",
    "plenoptic",
)


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str | None]:
    """The installed version of each distribution, None where it is not installed."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_state(checkout: str | os.PathLike) -> dict[str, Any] | None:
    """The commit checked out at `checkout` and whether the tree differs from it.

    `dirty` counts modified, staged and untracked (not ignored) files: an untracked module can
    change results as much as an edited one. Returns None when `checkout` is not in a git work tree
    (a copied workflow folder), when git is missing, or when git refuses the repository.
    """

    def git(*args: str) -> str:
        # --no-optional-locks: a status query must not take the index lock from a concurrent commit
        command = ["git", "--no-optional-locks", "-C", os.fspath(checkout), *args]
        return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        changes = git("status", "--porcelain")
    except (OSError, subprocess.CalledProcessError):
        return None
    return {"commit": commit, "dirty": bool(changes)}


def provenance(
    config: dict,
    git: dict[str, Any] | None,
    weights: dict[str, str | None] | None = None,
    image_manifest: str | None = None,
) -> dict[str, Any]:
    """The provenance record of a study.

    Args:
        config: the resolved config, as the workflow validated it and filled its defaults.
        git: `git_state` of the workflow's checkout, or None where it is not a git checkout.
        weights: backbone name -> sha256 of the weights its features were extracted with (as
            the feature stores record it; None where no file was hashed).
        image_manifest: the manifest digest of a real data set's files (featlab.data.manifest),
            as the original image store records it; None for the shapes world.

    Returns:
        A JSON-ready dict: study, time written (UTC), featlab version, commit and dirty flag,
        Python version and platform, package versions, the weights' sha256, the config and the
        image manifest.
    """
    git = git or {"commit": None, "dirty": None}
    return {
        "study": config["study"],
        "written": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "featlab": {"version": featlab.__version__, **git},
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": package_versions(),
        "weights_sha256": weights or {},
        "config": config,
        "image_manifest": image_manifest,
    }
