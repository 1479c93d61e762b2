"""Devices: the one place that turns a config's device word into a torch device, and a
precision word into an autocast context."""

import contextlib

import torch

DEVICES = ("auto", "cpu", "cuda")
# Autocast dtypes of a forward pass by their config word; float32 runs in full precision.
PRECISIONS = {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}


def resolve_device(name: str, key: str = "device") -> torch.device:
    """auto: CUDA when present, else the CPU; cuda without a GPU stops, naming the config key."""
    if name not in DEVICES:
        raise ValueError(f"{key} must be one of {DEVICES}, got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"{key} is cuda, but torch sees no CUDA device; set it to cpu or auto")
    return torch.device(name)


def autocast(
    device: torch.device, precision: str = "bfloat16", cuda_only: bool = False
) -> contextlib.AbstractContextManager:
    """Autocast to `precision` (a word of PRECISIONS) on `device`.

    float32, or a CPU device where `cuda_only` is set, gives a context that changes nothing: on
    the CPU reduced precision is slower for some models, so a caller may keep it to CUDA.
    """
    dtype = PRECISIONS[precision]
    if dtype is None or (cuda_only and device.type != "cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)
