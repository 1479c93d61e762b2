"""Semantic edits at InstructPix2Pix's size: edit_shard images/s, batched against one at a time.

An edit job's code path, timed: `edit_shard` edits the whole of an image store into a shard store
(resize, InstructPix2Pix, resize back, change masks, write), with `editing.batch_size` B against
1 in the same run. The editor is a `StableDiffusionInstructPix2PixPipeline` of Stable Diffusion
1.5's architecture with random weights (speed does not depend on them): UNet 320-640-1280-1280 with
8 input channels, VAE 128-256-512-512, CLIP ViT-L/14's text encoder, Euler ancestral sampler,
guidance 7.5 and image guidance 1.5 (the pipeline's defaults: three UNet passes a step). It is
saved with save_pretrained in float32 and loaded by `load_editor` in the benchmarked precision,
as a job loads a float32 checkpoint; the load is timed once, apart, as a job pays it once.
20 steps by default, the low end of the usual 20-50 (the pipeline's own default is 100); the
UNet's share of the time grows linearly with the steps.

Meant for a CUDA GPU; `--small` shrinks every width (depths kept) so that the script can be
checked on a CPU in about a minute (on a CPU shared with other jobs, `--threads 1` avoids
threads waiting on each other). Run from the repository root (nothing is downloaded):

    python bench/bench_edit.py --device cuda --images 64 --batch 8
    .venv/bin/python bench/bench_edit.py --small --images 8 --batch 4 --steps 2   # a CPU check
"""

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import featlab._compat  # noqa: F401  (defines torchvision op schemas before diffusers)

import numpy as np
import torch
from diffusers import StableDiffusionInstructPix2PixPipeline

from featlab.data.images import ImageSet, ImageStore, write_image_store
from featlab.manipulate import generative
from featlab.manipulate.editors import load_editor

# The SD builder lives with the tests' tiny editors; tests/ is not a package, so put it on the path.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from tiny_editors import SD15, build_stable_diffusion

# SD 1.5's depths with every width shrunk (UNet and VAE / 40 or so, text encoder / 24). One
# attention head: 8 would be 1 channel wide at 8 channels, and on a CPU their softmaxes over the
# 4096 latent pixels of a 512x512 photo would take most of the time.
SMALL = dataclasses.replace(
    SD15,
    unet_blocks=(8, 16, 32, 32),
    unet_heads=1,
    unet_groups=8,
    vae_blocks=(8, 8, 16, 16),
    vae_groups=8,
    text_hidden=32,
    text_intermediate=128,
    text_heads=4,
    text_vocab=None,
)


def save_editor(folder: Path, small: bool) -> dict:
    """Save the random InstructPix2Pix pipeline to `folder`; its components' parameter counts."""
    pipeline = build_stable_diffusion(
        StableDiffusionInstructPix2PixPipeline, SMALL if small else SD15
    )
    pipeline.save_pretrained(folder)
    return {
        name: sum(p.numel() for p in getattr(pipeline, name).parameters())
        for name in ("unet", "vae", "text_encoder")
    }


def write_photos(path: Path, n: int, size: int) -> ImageStore:
    """An original image store of `n` random size x size photos."""
    pixels = np.random.default_rng(0).integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    ids = np.array([f"photo{i}" for i in range(n)])
    write_image_store(path, ImageSet(pixels, np.zeros(n, np.int64), np.array(["test"] * n), ids))
    return ImageStore(path)


def time_shard(original, path: Path, spec: dict, editing: dict, stop: int, device) -> dict:
    """Seconds and peak GPU memory of editing the images [0, stop) into a shard at `path`."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    generative.edit_shard(original, path, spec, editing, (0, stop))
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else None
    return {"seconds": seconds, "peak_gib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default=None, help="default: bfloat16 on CUDA, else float32")
    parser.add_argument("--images", type=int, default=64, help="images in the shard")
    parser.add_argument("--size", type=int, default=512, help="the photos' side, in pixels")
    parser.add_argument("--batch", type=int, default=8, help="editing.batch_size against 1")
    parser.add_argument("--steps", type=int, default=20, help="denoising steps")
    parser.add_argument("--small", action="store_true", help="every width shrunk (a CPU check)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads; default: torch's")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    precision = args.precision or ("bfloat16" if device.type == "cuda" else "float32")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        # 1. The editor, saved as a diffusers folder, and the original photos.
        parameters = save_editor(folder / "editor", args.small)
        original = write_photos(folder / "original.zarr", args.images, args.size)
        spec = {
            "kind": "semantic",
            "editor": "instruct_pix2pix",
            "model": str(folder / "editor"),
            "prompt": "make it look like a snowy winter day",
            "steps": args.steps,
            "guidance": 7.5,  # > 1: classifier-free guidance on, as the pipeline's default
        }
        editing = {"device": args.device, "precision": precision}
        # 2. Load it as edit_shard does; the timed shards then reuse it, so the load (once per
        # job) is timed apart from the editing.
        start = time.perf_counter()
        editor = load_editor(generative.edit_settings(spec, {**editing, "batch_size": 1}))
        load_seconds = time.perf_counter() - start
        results = {}
        with mock.patch.object(generative, "load_editor", return_value=editor):
            for batch in (1, args.batch):
                # 3. A warm-up edit of one batch, one step (kernels, allocator), then the shard.
                settings = {**editing, "batch_size": batch}
                warm = {**spec, "steps": 1}
                stop = min(batch, args.images)
                time_shard(original, folder / f"warm{batch}.zarr", warm, settings, stop, device)
                path = folder / f"batch{batch}.zarr"
                results[batch] = time_shard(original, path, spec, settings, args.images, device)
    # 4. Report.
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    shape = "small check" if args.small else "InstructPix2Pix-sized (SD 1.5)"
    counts = ", ".join(f"{k} {v / 1e6:.1f}M" for k, v in parameters.items())
    threads = torch.get_num_threads()
    print(f"device {name}, torch {torch.__version__}, {precision}, CPU threads {threads}")
    print(f"{shape} random weights: {counts} parameters")
    print(f"{args.images} photos {args.size}x{args.size}, {args.steps} steps, Euler ancestral")
    print(f"editor load (load_editor, page-cached folder): {load_seconds:.1f} s")
    print(f"{'batch':>5}{'images/s':>10}{'s/image':>9}{'peak GiB':>10}")
    for batch, result in results.items():
        speed = args.images / result["seconds"]
        peak = "-" if result["peak_gib"] is None else f"{result['peak_gib']:.2f}"
        print(f"{batch:>5}{speed:>10.3f}{1 / speed:>9.2f}{peak:>10}")
    ratio = results[1]["seconds"] / results[args.batch]["seconds"]
    print(f"ratio batch {args.batch} / batch 1 images/s: {ratio:.2f}")


if __name__ == "__main__":
    main()
