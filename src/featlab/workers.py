"""Worker processes that neither deadlock nor rerun the calling script.

zarr 3 runs an event-loop thread: a forked child would inherit it in a broken state, so workers
are spawned. A spawned process imports the parent's main script before its task, which reruns
every line not guarded by `if __name__ == "__main__"`, and Snakemake's scripts are not guarded;
`main_script_hidden` hides the script's path from multiprocessing while workers start.
"""

import contextlib
import sys
from collections.abc import Iterator

START_METHOD = "spawn"


@contextlib.contextmanager
def main_script_hidden() -> Iterator[None]:
    """Start workers inside this block: they import only the modules of their task."""
    main = sys.modules["__main__"]
    script = main.__dict__.pop("__file__", None)
    try:
        yield
    finally:
        if script is not None:
            main.__file__ = script
