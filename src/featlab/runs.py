"""Rerunning after a kill: release the locks that a killed Snakemake run left behind.

Snakemake locks a run's inputs and outputs and releases them when the run ends. A run killed with
SIGKILL (or a power loss) never ends, and the next run in that directory refuses to start until
someone runs `snakemake --unlock`. featlab records which process holds the locks (`record_run`,
from the Snakefile's onstart); the next run releases them when that process is gone from this
host (`release_stale_locks`), so rerunning the same command finishes the work. A live run, or a
run of another host (a shared file system), keeps its locks.
"""

import json
import os
import socket
from pathlib import Path

STATE = Path(".snakemake")
RECORD = STATE / "featlab_run.json"


def record_run() -> None:
    """Note this process (the running Snakemake) as the holder of the directory's locks."""
    RECORD.parent.mkdir(parents=True, exist_ok=True)
    RECORD.write_text(json.dumps({"host": socket.gethostname(), "pid": os.getpid()}))


def forget_run() -> None:
    """The run ended and Snakemake released its locks."""
    RECORD.unlink(missing_ok=True)


def release_stale_locks() -> int | None:
    """Remove the locks of a recorded run whose process is gone; returns its pid, else None."""
    locks = STATE / "locks"
    if not RECORD.is_file() or not locks.is_dir():
        return None
    try:
        run = json.loads(RECORD.read_text())
        host, pid = run["host"], int(run["pid"])
    except (ValueError, KeyError, TypeError):
        return None  # not ours to judge: leave the locks to `snakemake --unlock`
    if host != socket.gethostname() or process_alive(pid):
        return None
    for lock in locks.iterdir():
        lock.unlink(missing_ok=True)
    forget_run()
    return pid


def process_alive(pid: int) -> bool:
    """Whether a process of this pid runs on this host (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: alive
    status = Path(f"/proc/{pid}/stat")
    if status.is_file():
        # The state follows the parenthesised command name; Z is a zombie.
        return status.read_text().rsplit(")", 1)[-1].split()[0] != "Z"
    return True
