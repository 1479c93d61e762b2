"""Workarounds for the environments featlab runs in; import this before timm or torchvision."""

import importlib.util

# A torch.library.Library removes its definitions when garbage-collected, so keep ours alive.
_LIBRARIES: list = []


def define_torchvision_op_schemas() -> None:
    """Let `import torchvision` succeed where its compiled ops cannot load.

    With a CPU-only torch, torchvision's C++ extension does not load, yet torchvision still
    registers fake kernels for `torchvision::nms` and `qnms`, which fails because nothing defined
    those ops; defining their schemas first (as the extension would) lets the import finish,
    while the ops themselves stay unavailable.
    """
    if importlib.util.find_spec("torchvision") is None:
        return
    import torch

    if hasattr(torch.ops.torchvision, "nms"):
        return
    library = torch.library.Library("torchvision", "FRAGMENT")
    for op in ("nms", "qnms"):
        library.define(f"{op}(Tensor dets, Tensor scores, float iou_threshold) -> Tensor")
    _LIBRARIES.append(library)


define_torchvision_op_schemas()
