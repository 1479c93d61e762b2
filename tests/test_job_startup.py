"""A job imports only what it uses: the frequent job scripts' featlab imports, in a fresh
interpreter, leave out the packages that only other jobs need (bench/bench_job_startup.py times
them)."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# Per script, packages that its imports must not load: each costs a job a tenth of a second
# (scipy.special) to more than a second (torch, timm with torchvision) at every start.
# fit_mappings runs the trained mappings' jobs too, which import torch when they train.
NOT_LOADED = {
    "fit_mapping": ["torch", "timm", "scipy.special"],
    "fit_mappings": ["torch", "timm", "scipy.special"],
    "gather_features": ["timm", "torchvision", "scipy.special"],
}


def loaded_by(script: str, modules: list[str]) -> list[str]:
    """Which of `modules` a fresh interpreter has loaded after the script's featlab imports."""
    tree = ast.parse((REPO / "workflow_scripts" / f"{script}.py").read_text())
    imports = [ast.unparse(node) for node in tree.body if isinstance(node, ast.ImportFrom)]
    code = "; ".join([*(line for line in imports if "featlab" in line), "import sys"])
    code += f"; print(' '.join(m for m in {modules!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return done.stdout.split()


@pytest.mark.parametrize("script", sorted(NOT_LOADED))
def test_a_job_script_does_not_import_what_its_job_never_uses(script):
    assert loaded_by(script, NOT_LOADED[script]) == []
