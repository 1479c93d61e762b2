"""Atomic outputs and JSON: a job that fails or is killed leaves nothing that looks complete."""

import contextlib
import glob
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from featlab.runs import process_alive


def remove(path: str | os.PathLike) -> None:
    """Remove a file or a directory tree; nothing happens if it does not exist."""
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`, renamed onto `path` only if the block succeeds.

    The temporary path lives in the same folder, so the final rename is atomic on one file system;
    a crash leaves only a hidden `.NAME.tmp-PID` entry, never a partial `path`, and the next write
    of `path` removes the entries of processes that are gone.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A killed job's leftovers: its process is gone, so nothing writes them any more.
    for stale in path.parent.glob(f".{glob.escape(path.name)}.tmp-*"):
        pid = stale.name.rsplit("-", 1)[1]
        if pid.isdigit() and not process_alive(int(pid)):
            remove(stale)
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    remove(temporary)
    try:
        yield temporary
    except BaseException:
        remove(temporary)
        raise
    if temporary.is_file():
        # Some writers (safetensors) create files readable by their owner only: give the file
        # the permissions of any other new file, so colleagues sharing a results folder read it.
        temporary.chmod(0o666 & ~umask())
    remove(path)
    os.replace(temporary, path)


def umask() -> int:
    """The process's umask, read without changing it where the system tells it (Linux), since
    setting it to read it would race with other threads creating files."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
        return int(next(line for line in lines if line.startswith("Umask:")).split()[1], 8)
    except (OSError, StopIteration):
        mask = os.umask(0o022)
        os.umask(mask)
        return mask


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write JSON atomically, with sorted keys so that equal data gives equal files."""
    with atomic_path(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2, sort_keys=True, allow_nan=True) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as handle:
        return json.load(handle)
