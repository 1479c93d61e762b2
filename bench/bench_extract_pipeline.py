"""Extraction end to end against a pure forward loop, and the feature store against raw numpy.

End to end is what an extraction job does: read the image store, preprocess (in DataLoader
workers where --workers > 0), forward, and write every layer and the logits to a float16 feature
store (in a writer thread on CUDA, in turn on a CPU). The baseline is timm's benchmark method: the
same model, batch size, precision and memory format, forwarding synthetic in-memory input in a
loop after a warm-up. The ratio is end to end over pure forward images/s (the issue's target: at
least 0.8 on a CPU, 0.9 on a GPU).

Store I/O: a (N, C, H, W) float16 layer written and read through featlab.store (Zarr with zstd,
and uncompressed) against np.save / np.load of the same array, in MB/s, and its size on disk;
every read comes back from the page cache.

Run from the repository root (random weights; nothing is downloaded):

    .venv/bin/python bench/bench_extract_pipeline.py --threads 2 --workers 0 --images 256
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
from featlab.devices import PRECISIONS
from featlab.extract import ExtractSettings, extract_features
from featlab.io import remove
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
    warm = folder / "warm.zarr"
    extract_features(model, spec, images, warm, settings, {}, (0, settings.batch_size))
    start = time.perf_counter()
    extract_features(model, spec, images, folder / "features.zarr", settings, {})
    synchronise(torch.device(settings.device))
    speed = len(images) / (time.perf_counter() - start)
    remove(folder)
    return speed


def store_io(folder: Path, values: np.ndarray, compression: str) -> dict:
    """Write and read MB/s of one layer through the feature store, and its size on disk: float32
    values in, as the forward pass gives them, float16 stored (the MB counted)."""
    path = folder / f"io_{compression}.zarr"
    stored = values.astype(np.float16)
    start = time.perf_counter()
    with FeatureStoreWriter(
        path, len(values), {"layer": values.shape[1:]}, 1, compression=compression
    ) as writer:
        writer.append({"layer": values, "logits": np.zeros((len(values), 1), np.float32)})
    write = time.perf_counter() - start
    start = time.perf_counter()
    read = FeatureStore(path).read("layer", dtype=np.float16)
    seconds = time.perf_counter() - start
    assert np.array_equal(read, stored)
    size = sum(file.stat().st_size for file in path.rglob("*") if file.is_file())
    remove(path)
    return {
        "write": stored.nbytes / 1e6 / write,
        "read": stored.nbytes / 1e6 / seconds,
        "size": size,
    }


def numpy_io(folder: Path, values: np.ndarray) -> dict:
    """The same float16 array through np.save and np.load."""
    values = values.astype(np.float16)
    start = time.perf_counter()
    np.save(folder / "io.npy", values)
    write = time.perf_counter() - start
    start = time.perf_counter()
    np.load(folder / "io.npy")
    read = time.perf_counter() - start
    remove(folder / "io.npy")
    return {
        "write": values.nbytes / 1e6 / write,
        "read": values.nbytes / 1e6 / read,
        "size": values.nbytes,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default=None, help="default: bfloat16 on CUDA, else float32")
    parser.add_argument("--paper", action="store_true", help="ConvNeXt-B 288 and SwinV2-B 384")
    parser.add_argument("--repeats", type=int, default=3)
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
    print(f"median of {args.repeats} alternating runs")
    print(f"{'model':<15}{'size':>5}{'compression':>12}{'end-to-end img/s':>18}", end="")
    print(f"{'pure forward img/s':>20}{'ratio':>7}")
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
            device = torch.device(args.device)
            for compression in ("zstd", "none"):
                chosen = dataclasses.replace(settings, compression=compression)
                piped, pure = [], []
                for _ in range(args.repeats):  # alternate, so that drifts hit both alike
                    piped.append(end_to_end(model, spec, images, chosen, folder / name))
                    pure.append(pure_forward(model, chosen, size, args.images, device))
                piped, pure = float(np.median(piped)), float(np.median(pure))
                print(f"{name:<15}{size:>5}{compression:>12}{piped:>18.1f}{pure:>20.1f}", end="")
                print(f"{piped / pure:>7.2f}")
        # A stage-1-sized layer: Gaussian values, and the same after a ReLU (half zeros).
        gauss = rng.standard_normal((256, 256, 36, 36), dtype=np.float32)
        megabytes = gauss.nbytes / 2e6
        print(f"\nstore I/O, {megabytes:.0f} MB float16 (256 x 256 x 36 x 36), MB/s:")
        print(f"{'values':<10}{'writer':<16}{'write':>8}{'read':>8}{'size MB':>9}")
        for label, values in (("gaussian", gauss), ("relu", np.maximum(gauss, 0))):
            rows = [(f"store {c}", store_io(folder, values, c)) for c in ("zstd", "none")]
            for writer, io in [*rows, ("numpy", numpy_io(folder, values))]:
                print(f"{label:<10}{writer:<16}{io['write']:>8.0f}{io['read']:>8.0f}", end="")
                print(f"{io['size'] / 1e6:>9.0f}")


if __name__ == "__main__":
    main()
