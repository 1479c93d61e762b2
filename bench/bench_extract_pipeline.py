"""Extraction end to end against a pure forward loop, and the feature store against raw numpy.

End to end is what an extraction job does: read the image store, preprocess (in DataLoader
workers), forward, and write every layer and the logits to a float16 feature store (in the writer
thread). The baseline is timm's benchmark method: the same model, batch size, precision and
memory format, forwarding synthetic in-memory input in a loop after a warm-up. The ratio is end to
end over pure forward images/s (the issue's target: at least 0.8 on a CPU, 0.9 on a GPU).

Store I/O: a (N, C, H, W) float16 layer written and read through featlab.store (Zarr, default
codec) against np.save / np.load of the same array, in MB/s; both read back from the page cache.

Run from the repository root (random weights; nothing is downloaded):

    .venv/bin/python bench/bench_extract_pipeline.py --threads 2 --workers 1
    # on a CUDA GPU, the paper's backbones:
    python bench/bench_extract_pipeline.py --device cuda --paper --workers 8
"""

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import featlab._compat  # noqa: F401  (defines torchvision op schemas before timm)

import numpy as np
import torch

from featlab.backbones import BackboneSpec, build_backbone
from featlab.data.images import ImageSet, ImageStore, write_image_store
from featlab.extract import PRECISIONS, ExtractSettings, extract_features
from featlab.store import FeatureStore, FeatureStoreWriter

# (name, timm model, image side, layers): small ones for a CPU, the FeatMap paper's for a GPU.
CPU_MODELS = [
    ("convnext_atto", "convnext_atto", 224, ("stages.1", "stages.2", "stages.3")),
    ("vit_small", "vit_small_patch16_224", 224, ("blocks.3", "blocks.7", "blocks.11")),
]
PAPER_MODELS = [
    ("convnext_base", "convnext_base", 288, ("stages.1", "stages.2", "stages.3")),
    ("swinv2_base", "swinv2_base_window12to24_192to384", 384, ("layers.1", "layers.2", "layers.3")),
]


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def pure_forward(model, settings: ExtractSettings, size: int, n_images: int, device) -> float:
    """Images/s of model(x) on random input: timm's benchmark loop (warm-up, then timed)."""
    model = model.to(device).eval()
    x = torch.randn(settings.batch_size, 3, size, size, device=device)
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    dtype = PRECISIONS[settings.precision]
    steps = max(1, n_images // settings.batch_size)
    with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=bool(dtype)):
        for _ in range(2):
            model(x)
        synchronise(device)
        start = time.perf_counter()
        for _ in range(steps):
            model(x)
        synchronise(device)
    return steps * settings.batch_size / (time.perf_counter() - start)


def end_to_end(model, spec, images: ImageStore, settings, folder: Path) -> float:
    """Images/s of extract_features over the whole image store (after a short warm-up run)."""
    extract_features(
        model, spec, images, folder / "warm.zarr", settings, {}, (0, settings.batch_size)
    )
    start = time.perf_counter()
    extract_features(model, spec, images, folder / "features.zarr", settings, {})
    synchronise(torch.device(settings.device))
    return len(images) / (time.perf_counter() - start)


def store_io(folder: Path, n: int, shape: tuple[int, int, int]) -> dict:
    """Write and read MB/s of one float16 layer through the feature store and through numpy."""
    values = np.random.default_rng(0).standard_normal((n, *shape)).astype(np.float16)
    megabytes = values.nbytes / 1e6
    start = time.perf_counter()
    with FeatureStoreWriter(folder / "io.zarr", n, {"layer": shape}, 1) as writer:
        writer.append({"layer": values, "logits": np.zeros((n, 1), np.float32)})
    zarr_write = time.perf_counter() - start
    start = time.perf_counter()
    read = FeatureStore(folder / "io.zarr").read("layer", dtype=np.float16)
    zarr_read = time.perf_counter() - start
    assert np.array_equal(read, values)
    start = time.perf_counter()
    np.save(folder / "io.npy", values)
    numpy_write = time.perf_counter() - start
    start = time.perf_counter()
    np.load(folder / "io.npy")
    numpy_read = time.perf_counter() - start
    return {
        "megabytes": megabytes,
        "zarr_write": megabytes / zarr_write,
        "numpy_write": megabytes / numpy_write,
        "zarr_read": megabytes / zarr_read,
        "numpy_read": megabytes / numpy_read,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default=None, help="default: bfloat16 on CUDA, else float32")
    parser.add_argument("--paper", action="store_true", help="ConvNeXt-B 288 and SwinV2-B 384")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cuda = args.device == "cuda"
    settings = ExtractSettings(
        batch_size=args.batch_size,
        device=args.device,
        precision=args.precision or ("bfloat16" if cuda else "float32"),
        channels_last=cuda,
        workers=args.workers,
    )
    rng = np.random.default_rng(0)
    print(f"{dataclasses.asdict(settings)}, {args.images} images, {args.threads} threads")
    print(f"{'model':<15}{'size':>5}{'end-to-end img/s':>18}{'pure forward img/s':>20}{'ratio':>7}")
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        for name, model_name, size, layers in PAPER_MODELS if args.paper else CPU_MODELS:
            pixels = rng.integers(0, 256, (args.images, size, size, 3), dtype=np.uint8)
            image_set = ImageSet(
                pixels,
                np.zeros(args.images, np.int64),
                np.array(["test"] * args.images),
                np.array([str(i) for i in range(args.images)]),
            )
            write_image_store(folder / f"{name}.images.zarr", image_set)
            images = ImageStore(folder / f"{name}.images.zarr")
            spec = BackboneSpec(model=model_name, layers=layers, weights="random")
            model = build_backbone(spec)
            piped = end_to_end(model, spec, images, settings, folder / name)
            pure = pure_forward(model, settings, size, args.images, torch.device(args.device))
            print(f"{name:<15}{size:>5}{piped:>18.1f}{pure:>20.1f}{piped / pure:>7.2f}")
        io = store_io(folder, 256, (256, 36, 36))
    print(f"\nstore I/O, {io['megabytes']:.0f} MB float16 (256 x 256 x 36 x 36):")
    for kind in ("write", "read"):
        zarr_speed, numpy_speed = io[f"zarr_{kind}"], io[f"numpy_{kind}"]
        print(
            f"  {kind:<6} featlab store {zarr_speed:8.0f} MB/s   numpy {numpy_speed:8.0f} MB/s"
            f"   ratio {zarr_speed / numpy_speed:.2f}"
        )


if __name__ == "__main__":
    main()
