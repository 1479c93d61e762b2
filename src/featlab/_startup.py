"""Make `import timm` and `import torchvision` work in any Python process of the environment.

`featlab._compat` must run before torchvision is first imported (see its docstring). Scripts and
the library import it first; a notebook or another tool that imports timm directly would not.
`make venv` therefore installs a `.pth` file (`python -m featlab._startup`) whose one line imports
this module at every interpreter start; it only adds an import hook, which runs `featlab._compat`
when torchvision is first looked up, so that processes that never import torchvision pay nothing.
"""

import importlib.abc
import sys
import sysconfig
from pathlib import Path

PTH_NAME = "featlab_compat.pth"
PTH_LINE = "import featlab._startup\n"


class CompatBeforeTorchvision(importlib.abc.MetaPathFinder):
    """An import hook that runs featlab._compat when torchvision is first looked up."""

    def find_spec(self, name, path=None, target=None):
        if name == "torchvision":
            sys.meta_path.remove(self)  # once: _compat itself looks torchvision up
            import featlab._compat  # noqa: F401
        return None  # the usual finders import the module


def install_hook() -> None:
    """Put the hook first in sys.meta_path, unless torchvision is imported or hooked already."""
    hooked = any(isinstance(finder, CompatBeforeTorchvision) for finder in sys.meta_path)
    if "torchvision" not in sys.modules and not hooked:
        sys.meta_path.insert(0, CompatBeforeTorchvision())


def write_pth(folder: str | Path) -> Path:
    """Write the `.pth` file that imports this module at start-up into a site-packages folder."""
    path = Path(folder) / PTH_NAME
    path.write_text(PTH_LINE)
    return path


install_hook()

if __name__ == "__main__":  # `python -m featlab._startup`: install into this environment
    print(write_pth(sysconfig.get_paths()["purelib"]))
