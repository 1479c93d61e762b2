"""Code hashes from the import graph: a module's edit reruns exactly the scripts that reach it."""

import shutil
from pathlib import Path

from featlab.codehash import code_hash, featlab_imports

REPO = Path(__file__).resolve().parents[1]


def _modules(script: Path, src: Path) -> set[str]:
    return {p.relative_to(src).with_suffix("").as_posix() for p in featlab_imports(script, src)}


def test_imports_are_followed_through_modules_and_packages(tmp_path):
    src = tmp_path / "src"
    (src / "featlab" / "deep").mkdir(parents=True)
    (src / "featlab" / "__init__.py").write_text("")
    (src / "featlab" / "deep" / "__init__.py").write_text("")
    (src / "featlab" / "deep" / "leaf.py").write_text("X = 1\n")
    (src / "featlab" / "deep" / "middle.py").write_text("from .leaf import X\n")
    (src / "featlab" / "top.py").write_text("def f():\n    from featlab.deep import middle\n")
    (src / "featlab" / "unused.py").write_text("import featlab.top\n")
    script = tmp_path / "script.py"
    script.write_text("import os\nfrom featlab import top\n")
    expected = {"featlab/__init__", "featlab/top", "featlab/deep/__init__", "featlab/deep/middle"}
    assert _modules(script, src) == expected | {"featlab/deep/leaf"}


def test_a_comment_in_a_deep_module_changes_exactly_the_scripts_that_reach_it(tmp_path):
    shutil.copytree(REPO / "src" / "featlab", tmp_path / "src" / "featlab")
    shutil.copytree(REPO / "workflow_scripts", tmp_path / "scripts")
    src, scripts = tmp_path / "src", sorted((tmp_path / "scripts").glob("*.py"))
    before = {script.stem: code_hash(script, src) for script in scripts}
    module = src / "featlab" / "workers.py"
    module.write_text(module.read_text() + "\n# a comment\n")
    changed = {script.stem for script in scripts if code_hash(script, src) != before[script.stem]}
    # Reached through other modules, which a hand list missed: data.sources.writer imports workers.
    assert {"extract", "prepare_images"} <= changed
    assert not changed & {"plot_cosine", "aggregate", "render_shapes", "train_featinv"}
    assert changed == {s.stem for s in scripts if "featlab/workers" in _modules(s, src)}


def test_the_hash_covers_the_script_itself(tmp_path):
    src = tmp_path / "src"
    (src / "featlab").mkdir(parents=True)
    (src / "featlab" / "__init__.py").write_text("")
    script = tmp_path / "script.py"
    script.write_text("import featlab\n")
    before = code_hash(script, src)
    script.write_text("import featlab  # noted\n")
    assert code_hash(script, src) != before
