"""The conda environment and the pip install pin the same versions, and every rule names the env."""

import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _pins(lines) -> dict[str, str]:
    """`name==version` lines (comments and blanks skipped) as {name: version}."""
    pins = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"{line!r} is not an exact pin (name==version)"
            pins[name.lower()] = version
    return pins


def test_conda_env_matches_the_pip_pins():
    requirements = _pins((REPO / "requirements.txt").read_text().splitlines())
    env = yaml.safe_load((REPO / "envs" / "featlab.yaml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _pins(pip_section) == requirements


def test_constraints_pin_torch_and_torchvision_as_the_requirements_do():
    constraints = _pins((REPO / "constraints.txt").read_text().splitlines())
    requirements = _pins((REPO / "requirements.txt").read_text().splitlines())
    assert set(constraints) == {"torch", "torchvision"}
    for name, version in constraints.items():
        assert requirements[name] == version


def test_every_rule_names_an_existing_conda_env():
    for path in sorted((REPO / "rules").glob("*.smk")):
        text = path.read_text()
        rules = re.findall(r"^rule (\w+):", text, flags=re.MULTILINE)
        blocks = re.split(r"^rule \w+:", text, flags=re.MULTILINE)[1:]
        for rule, block in zip(rules, blocks, strict=True):
            if "script:" in block or "shell:" in block:
                assert re.search(r"^\s+conda:\s*\n\s+ENV\s*$", block, re.MULTILINE), (
                    f"{path.name}: rule {rule} names no conda environment"
                )
    common = (REPO / "rules" / "common.smk").read_text()
    env = re.search(r'^ENV = "\.\./(.+)"$', common, re.MULTILINE).group(1)
    assert (REPO / env).is_file()


def test_the_startup_file_lets_timm_import_first(tmp_path):
    """`make venv` installs featlab._startup's .pth: a notebook's first `import timm` (before any
    featlab import) must work, as torchvision's op schemas are defined on the way."""
    from featlab._startup import write_pth

    write_pth(tmp_path)
    code = (
        f"import site, sys; site.addsitedir({str(tmp_path)!r}); import timm; "
        "assert 'featlab._compat' in sys.modules"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
