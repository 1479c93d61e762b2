"""Safety by inspection of every Python and Snakemake file: no pickle loading (third-party torch
checkpoints load with weights_only=True), nothing written with torch.save, and no shell that a
config string could reach."""

import ast
import os
import re
import stat

import pytest
from tiny_study import REPO

PYTHON = sorted(
    path
    for folder in ("src", "workflow_scripts", "bench", "tests")
    for path in (REPO / folder).rglob("*.py")
)
SNAKEMAKE = [REPO / "Snakefile", *sorted((REPO / "rules").glob("*.smk"))]
# Modules that unpickle, and calls that do (or run a shell).
PICKLING_MODULES = {"pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}
PICKLING_CALLS = {"read_pickle", "from_pickle", "load_pickle"}
SHELL_CALLS = {"system", "popen", "getoutput", "getstatusoutput"}


def _calls(tree: ast.AST):
    """(called name, owner name or None, node) of every call: `torch.load(...)` is ("load",
    "torch", node)."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Attribute):
            owner = node.func.value.id if isinstance(node.func.value, ast.Name) else None
            yield node.func.attr, owner, node
        elif isinstance(node.func, ast.Name):
            yield node.func.id, None, node


def _constant(node: ast.Call, name: str, default=None):
    """A keyword argument's constant value, `default` when absent, "?" when not a constant."""
    for item in node.keywords:
        if item.arg == name:
            return item.value.value if isinstance(item.value, ast.Constant) else "?"
    return default


def problems(source: str, writes: bool = True) -> list[str]:
    """What in this Python source could unpickle, run a shell, or (`writes`) write a pickle."""
    tree = ast.parse(source)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = [node.module] if isinstance(node, ast.ImportFrom) else []
            modules += [alias.name for alias in node.names] if isinstance(node, ast.Import) else []
            if {m.split(".")[0] for m in modules if m} & PICKLING_MODULES:
                found.append(f"line {node.lineno}: imports a pickling module")
    for name, owner, node in _calls(tree):
        where = f"line {node.lineno}"
        if (owner, name) == ("torch", "load") and _constant(node, "weights_only") is not True:
            found.append(f"{where}: torch.load without weights_only=True")
        if (owner, name) == ("np", "load") and _constant(node, "allow_pickle", False) is not False:
            found.append(f"{where}: np.load with allow_pickle")
        if writes and (owner, name) == ("torch", "save"):
            found.append(f"{where}: torch.save (write safetensors)")
        if name in PICKLING_CALLS:
            found.append(f"{where}: {name}")
        if name in SHELL_CALLS and owner in ("os", "subprocess"):
            found.append(f"{where}: {owner}.{name} runs a shell")
        if _constant(node, "shell", False) is not False:
            found.append(f"{where}: shell=True")
    return found


@pytest.mark.parametrize("path", PYTHON, ids=lambda path: str(path.relative_to(REPO)))
def test_no_pickle_and_no_shell_in_python(path):
    # Tests write third-party checkpoints with torch.save, to load them as featlab would.
    writes = "tests" not in path.relative_to(REPO).parts
    assert problems(path.read_text(), writes) == []


def test_the_inspection_catches_each_problem():
    source = """
import pickle
import torch, numpy as np, os, subprocess
torch.load("model.pt")
torch.load("model.pt", weights_only=False)
np.load("x.npy", allow_pickle=True)
torch.save({}, "model.pt")
os.system("ls " + name)
subprocess.run(command, shell=True)
"""
    assert [problem.split(": ", 1)[1] for problem in problems(source)] == [
        "imports a pickling module",
        "torch.load without weights_only=True",
        "torch.load without weights_only=True",
        "np.load with allow_pickle",
        "torch.save (write safetensors)",
        "os.system runs a shell",
        "shell=True",
    ]
    safe = 'torch.load("m.pt", map_location="cpu", weights_only=True)\nsubprocess.run(["ls"])\n'
    assert problems(safe) == []


@pytest.mark.parametrize("path", SNAKEMAKE, ids=lambda path: str(path.relative_to(REPO)))
def test_no_rule_runs_a_shell_command(path):
    """Rules run Python scripts that get the config as Snakemake params (`script:`): a `shell:`,
    `run:`, `wrapper:` or `notebook:` directive, where a config string could be pasted into a
    command, has no place."""
    text = path.read_text()
    assert re.findall(r"^\s+(shell|run|wrapper|notebook):", text, re.MULTILINE) == []


def test_the_loaders_the_inspection_checks_exist():
    """The inspection is not vacuous: it reads the modules that load third-party checkpoints."""
    loaders = {
        path.name
        for path in PYTHON
        for name, owner, _ in _calls(ast.parse(path.read_text()))
        if (owner, name) == ("torch", "load")
    }
    assert {"backbones.py", "scores.py"} <= loaders


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_written_files_honour_the_umask(tmp_path, mask):
    """safetensors creates its files 0600: colleagues sharing a results folder could not read a
    fitted map or a FeatInv model (issue 25). Every atomic write now gets the umask's mode."""
    import torch
    from safetensors.torch import save_file

    from featlab.io import atomic_path, write_json

    previous = os.umask(mask)
    try:
        with atomic_path(tmp_path / "map.safetensors") as temporary:
            save_file({"weight": torch.zeros(2)}, temporary)
        write_json(tmp_path / "map.json", {})
    finally:
        os.umask(previous)
    for name in ("map.safetensors", "map.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~mask
