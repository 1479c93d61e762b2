"""What the two lenses add to an edit_features job: `compare_lenses` timed on the default study's
shapes and backbones.

The default study's CNN (quarter-width ResNet-18, output stride 8) drives the morphs of its
deepest layer, `layer4`, and its ViT reads them for transfer, both with random weights drawn from
the configured architectures (the time depends on the iterative morph's steps, which a trained
network may cut short: with random weights the walk tends to run all `lens.max_steps` steps, so
this is near the upper end). Six 64x64 test shapes (`edits.invert_images`) go toward a class other
than their own at `edits.lens_budget`, with the lens section's defaults. FeatInv's reconstruction
of the matched feature lens is left out: it is one more map in the cell's inversion, which already
samples 33 (README, stage `edits`). Run from the repository root:

    .venv/bin/python bench/bench_edit_lenses.py --threads 1
"""

import argparse
import time
from pathlib import Path

import featlab._compat  # noqa: F401  (defines torchvision op schemas before timm)

import numpy as np
import torch
import yaml

from featlab.backbones import BackboneSpec, build_backbone, capture_layers
from featlab.data.shapes import ShapesSettings, render_image_set
from featlab.edits.lens import target_gradient
from featlab.edits.lenses import morph_settings, reader_of
from featlab.edits.readings import CellInputs, compare_lenses
from featlab.edits.settings import EditSettings


def _backbone(config: dict, name: str) -> torch.nn.Module:
    """A configured backbone with random weights and the shapes' five classes."""
    section = config["backbones"][name]
    spec = BackboneSpec(
        model=section["model"],
        layers=tuple(section["layers"]),
        model_args=section["model_args"],
        num_classes=5,
    )
    return build_backbone(spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--images", type=int, default=EditSettings().invert_images)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    config = yaml.safe_load(Path("config.yaml").read_text())
    torch.manual_seed(0)
    preprocessing = {"mean": [0.5] * 3, "std": [0.25] * 3, "input_size": 64}
    driver = reader_of(_backbone(config, "cnn"), preprocessing)
    readers = {"vit": reader_of(_backbone(config, "vit"), preprocessing)}
    shapes, _ = render_image_set(ShapesSettings(n_train=0, n_test=args.images))
    images, labels = shapes.images, shapes.labels
    pixels = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    with torch.no_grad(), capture_layers(driver.model, ("layer4",)) as outputs:
        logits = driver.logits(pixels).numpy()
        original = outputs["layer4"].double().numpy()
    target = (labels + 1) % 5
    inputs = CellInputs(
        original=original,
        prefix=None,
        manipulated=original,
        original_logits=logits,
        manipulated_logits=logits,
        source=labels,
        target=target,
        reference=original,
        images=images,
        manipulated_images=images,
        indices=np.arange(len(images)),
    )
    lens = morph_settings({}, EditSettings().lens_budget)
    base = dict(backbone="cnn", layer="layer4", manipulation="swap_class")
    start = time.perf_counter()
    gradient = target_gradient(driver.model, "layer4", original, None, target, (64, 64))
    rows, _ = compare_lenses(driver, "layer4", inputs, gradient, lens, base, None, readers)
    seconds = time.perf_counter() - start
    value = {(r["comparison"], r["metric"]): r["value"] for r in rows}
    print(f"{len(images)} images, {args.threads} thread(s): {seconds:.1f} s")
    for key in (("input_lens", "l2_distance"), ("input_lens", "feature_norm")):
        print(*key, f"{value[key]:.3f}")
    for name in (
        "input_lens",
        "feature_lens_matched",
        "original_read_by_vit",
        "input_lens_read_by_vit",
    ):
        print(name, "target_probability", f"{value[(name, 'target_probability')]:.3f}")


if __name__ == "__main__":
    main()
