"""Devices: the one place that turns a config's device word into a torch device."""

import torch

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str, key: str = "device") -> torch.device:
    """auto: CUDA when present, else the CPU; cuda without a GPU stops, naming the config key."""
    if name not in DEVICES:
        raise ValueError(f"{key} must be one of {DEVICES}, got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"{key} is cuda, but torch sees no CUDA device; set it to cpu or auto")
    return torch.device(name)
