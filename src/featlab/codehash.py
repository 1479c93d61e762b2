"""Code hashes of workflow scripts: the script and every featlab module it imports, transitively.

A rule's code hash is one of its params, so editing a module reruns exactly the jobs whose scripts
reach it. The modules are found by reading the import statements (Python's ast), not listed by
hand: a hand list misses the modules that a module imports in turn.
"""

import ast
import functools
import hashlib
from pathlib import Path

PACKAGE = "featlab"


def _module_file(src: Path, name: str) -> Path | None:
    """The file of dotted module `name` under `src` (a package's __init__.py), or None."""
    base = src.joinpath(*name.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _package_of(src: Path, path: Path) -> str:
    """The dotted package a file's relative imports start from."""
    parts = path.relative_to(src).with_suffix("").parts
    return ".".join(parts if path.name == "__init__.py" else parts[:-1])


def _imported_names(src: Path, path: Path) -> set[str]:
    """Every dotted module name `path` may import, anywhere in it (functions included): for
    `from a import b`, both `a` and `a.b` (b may be a submodule or a name)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the file's package, `level - 1` packages up
                package = _package_of(src, path).split(".")
                anchor = ".".join(package[: len(package) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in names if name == PACKAGE or name.startswith(f"{PACKAGE}.")}


def _with_parents(name: str) -> list[str]:
    """Importing a.b.c runs a/__init__.py and a/b/__init__.py first: a.b.c, a.b, a."""
    parts = name.split(".")
    return [".".join(parts[:k]) for k in range(len(parts), 0, -1)]


@functools.cache
def featlab_imports(script: Path, src: Path) -> tuple[Path, ...]:
    """The featlab files `script` runs when imported, transitively, sorted: the modules it
    imports, the modules those import, and the packages' __init__.py files on the way.

    Args:
        script: A workflow script (or any Python file).
        src: The folder holding the featlab package.
    """
    found: set[Path] = set()
    pending = [script]
    while pending:
        path = pending.pop()
        for name in _imported_names(src, path):
            for module in _with_parents(name):
                file = _module_file(src, module)
                if file is not None and file not in found:
                    found.add(file)
                    pending.append(file)
    return tuple(sorted(found))


def code_hash(script: Path, src: Path) -> str:
    """sha256 (16 hex digits) of a workflow script and the featlab files it imports: any edit of
    one of them, a comment included, changes it, and no edit of another file does."""
    digest = hashlib.sha256()
    for path in (script, *featlab_imports(script, src)):
        name = path.name if path == script else path.relative_to(src).as_posix()
        digest.update(name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]
