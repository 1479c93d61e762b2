"""Extraction throughput: batched forward passes against one image at a time, in one run.

Both write the same feature store (the default study's backbones, random weights, three layers
and the logits, float16) from the same shapes images; the ratio is batched over per-image
images/s. Run from the repository root:

    .venv/bin/python bench/bench_extract.py --images 512 --threads 2
"""

import argparse
import tempfile
import time
from pathlib import Path

import featlab._compat  # noqa: F401  (defines torchvision op schemas before timm)

import torch
import yaml

from featlab.backbones import BackboneSpec, build_backbone
from featlab.data.images import ImageStore, write_image_store
from featlab.data.shapes import ShapesSettings, render_image_set
from featlab.extract import ExtractSettings, extract_features


def images_per_second(model, spec, images, folder: Path, batch_size: int) -> float:
    path = folder / f"features_b{batch_size}.zarr"
    start = time.perf_counter()
    extract_features(model, spec, images, path, ExtractSettings(batch_size=batch_size), {})
    return len(images) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    backbones = yaml.safe_load(Path("config.yaml").read_text())["backbones"]
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        image_set, _ = render_image_set(ShapesSettings(n_train=args.images, n_test=0))
        write_image_store(folder / "images.zarr", image_set)
        images = ImageStore(folder / "images.zarr")
        print(f"{'backbone':<10}{'batched img/s':>15}{'per-image img/s':>17}{'ratio':>8}")
        for name, entry in backbones.items():
            settings = {key: entry[key] for key in ("model", "layers", "model_args")}
            spec = BackboneSpec(**settings, weights="random", num_classes=5)
            model = build_backbone(spec)
            batched = images_per_second(model, spec, images, folder, args.batch_size)
            single = images_per_second(model, spec, images, folder, 1)
            print(f"{name:<10}{batched:>15.1f}{single:>17.1f}{batched / single:>8.1f}")


if __name__ == "__main__":
    main()
