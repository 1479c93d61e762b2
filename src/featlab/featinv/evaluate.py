"""Invert original, manipulated and mapped feature maps with FeatInv and score the images.

Each reconstruction is named after what it was reconstructed from, and each row of the metrics
table (stage `inversion`, split `test`) compares one reconstruction with one reference; the
`comparison` column reads `{reconstruction}_vs_{reference}`:

reconstructions
  reconstructed_original     from the original features
  reconstructed_manipulated  from the true manipulated features
  mapped                     from the mapped features (the mapping applied to the original ones)
  pooled_original, pooled_mapped
                             from those maps with every position set to the map's mean vector
                             (the pooled-conditioning ablation; spatial conditioning should win)
  perturbed_x{k}             from the original features plus Gaussian noise whose norm is k times
                             ||manipulated - original|| of the same image (reconstruction control)
  mean_image                 not a reconstruction: the mean train image, the baseline to beat
  resized_original           not a reconstruction: the original at the model's resolution, the
                             ceiling of top1_agreement and cosine_median at that resolution
references
  original, manipulated      the images (resized to the model's resolution)
  reconstructed_original, reconstructed_manipulated
                             the reconstructions above: `mapped_vs_reconstructed_manipulated`
                             isolates the mapping error from the inversion error
  conditioning               the feature map the reconstruction stands for (for pooled ones, the
                             spatial map that was pooled)

metrics
  ssim, mse, lpips (or lpips_random_backbone, see scores.py)   image against image
  cosine_median   the backbone's features of the reconstruction against `conditioning`
  top1_agreement  the classifier's top-1 class of the reconstruction against that of the image
                  the features came from (the manipulated image for mapped, pooled_mapped)
Reconstructions are upsampled to the backbone's input size before the backbone sees them.

What does not depend on the mapping (the references, the mean image, the reconstructions of the
true features, the pooled original and the perturbations) is inverted once per (layer,
manipulation) by `invert_references`, with an empty mapping column; `invert_mapping` adds one
mapping's `mapped` and `pooled_mapped` reconstructions.

Two inverters make reconstructions, scored by the same code: FeatInv (`open_inversion`) and the
optimiser of `optimise` (`open_optimisation`), which needs no trained model. The inverter is a
word of `comparison`: the optimiser's reconstructions carry the prefix `optimised_`, and a
reconstruction it is compared with is its own, as in
`optimised_mapped_vs_optimised_reconstructed_manipulated`; the floor and ceiling rows are the
same for both and written once per cell.
"""

import dataclasses
import functools
import os
from collections.abc import Callable

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from torch import nn

from featlab import metrics
from featlab.backbones import capture_layers, preprocess, to_grid
from featlab.data.images import ImageStore
from featlab.featinv.model import FeatInvModel
from featlab.featinv.optimise import FeatureReader, OptimiseSettings, optimise
from featlab.featinv.sample import SampleSettings, sample
from featlab.featinv.scores import LPIPS, mse, ssim
from featlab.featinv.train import images_to_tensor, tensor_to_images
from featlab.io import atomic_path
from featlab.store import FeatureStore
from featlab.tables import metric_row


@dataclasses.dataclass(frozen=True)
class InvertSettings:
    """Which test images to invert and which controls to add."""

    n_images: int = 16  # first test images to invert
    pooled: bool = True  # the pooled-conditioning ablation
    perturbation_scales: tuple[float, ...] = ()  # reconstruction control; the paper: 0.5, 1, 2
    seed: int = 0  # perturbation noise
    grid_images: int = 6  # rows of the PNG grid


@dataclasses.dataclass
class InversionInputs:
    """Test images, their features and the classifier's logits on them."""

    original_images: np.ndarray  # uint8 (N, H, W, 3)
    manipulated_images: np.ndarray  # uint8 (N, H, W, 3)
    original: np.ndarray  # (N, C, h, w) original features
    manipulated: np.ndarray  # (N, C, h, w) true manipulated features
    original_logits: np.ndarray  # (N, classes)
    manipulated_logits: np.ndarray  # (N, classes)
    mean_image: np.ndarray  # uint8 (H, W, 3) mean train image


class BackboneProbe:
    """The backbone that made the features: one layer's grid and the logits of images."""

    def __init__(self, model: nn.Module, layer: str, preprocessing: dict):
        self.model, self.layer = model.eval(), layer
        self.config = {k: preprocessing[k] for k in ("mean", "std")}
        self.input_size = int(preprocessing["input_size"])

    @torch.inference_mode()
    def __call__(self, images: np.ndarray, batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
        """uint8 (N, R, R, 3) -> features (N, C, h, w) and logits (N, classes)."""
        features, logits = [], []
        for start in range(0, len(images), batch_size):
            x = preprocess(images[start : start + batch_size], self.config, self.input_size)
            with capture_layers(self.model, (self.layer,)) as outputs:
                logits.append(self.model(x).float().numpy())
            features.append(to_grid(self.model, outputs[self.layer])[0].float().numpy())
        return np.concatenate(features), np.concatenate(logits)


def mean_image(images: ImageStore, resolution: int) -> np.ndarray:
    """The mean train image at the model's resolution, uint8 (R, R, 3)."""
    pixels = images.images.get_orthogonal_selection((images.indices("train"),))
    mean = images_to_tensor(pixels, resolution).mean(dim=0, keepdim=True)
    return tensor_to_images(mean)[0]


def pooled(features: np.ndarray) -> np.ndarray:
    """Each map's mean feature vector copied to every position: (N, C, h, w) -> (N, C, h, w)."""
    return np.broadcast_to(features.mean(axis=(2, 3), keepdims=True), features.shape).copy()


def perturbed(inputs: InversionInputs, scale: float, seed: int) -> np.ndarray:
    """Original features plus Gaussian noise of norm scale * ||manipulated - original||."""
    generator = np.random.default_rng(seed)
    noise = generator.standard_normal(inputs.original.shape)
    axes = (1, 2, 3)
    target = scale * np.sqrt(np.square(inputs.manipulated - inputs.original).sum(axis=axes))
    noise *= (target / np.sqrt(np.square(noise).sum(axis=axes)))[:, None, None, None]
    return (inputs.original + noise).astype(np.float32)


# The reconstructions' names, the words an inverter's prefix goes before.
RECONSTRUCTIONS = ("reconstructed_", "mapped", "pooled_", "perturbed_")


@dataclasses.dataclass(frozen=True)
class Conditioning:
    """One reconstruction to make: what conditions it and what it is scored against."""

    features: np.ndarray  # (N, C, h, w) what the hint block sees
    target: np.ndarray  # (N, C, h, w) what the reconstruction's features should match
    source: str  # the image whose class the reconstruction should keep: original | manipulated
    references: tuple[str, ...]  # images it is compared with (SSIM, MSE, LPIPS)


def reference_plan(inputs: InversionInputs, settings: InvertSettings) -> dict[str, Conditioning]:
    """What one (layer, manipulation) inverts once for every mapping: the true features, the
    pooled original features and the norm-matched perturbations of the original features."""
    plan = {
        "reconstructed_original": Conditioning(
            inputs.original, inputs.original, "original", ("original",)
        ),
        "reconstructed_manipulated": Conditioning(
            inputs.manipulated, inputs.manipulated, "manipulated", ("manipulated",)
        ),
    }
    if settings.pooled:
        plan["pooled_original"] = Conditioning(
            pooled(inputs.original),
            inputs.original,
            "original",
            ("original", "reconstructed_original"),
        )
    for scale in settings.perturbation_scales:
        features = perturbed(inputs, scale, settings.seed)
        plan[f"perturbed_x{scale:g}"] = Conditioning(
            features, features, "original", ("original", "reconstructed_original")
        )
    return plan


def mapped_plan(mapped: np.ndarray, settings: InvertSettings) -> dict[str, Conditioning]:
    """What one mapping adds: its mapped features (and their pooled ablation), each scored
    against the manipulated image and the reconstruction of the true manipulated features."""
    references = ("manipulated", "reconstructed_manipulated")
    plan = {"mapped": Conditioning(mapped, mapped, "manipulated", references)}
    if settings.pooled:
        plan["pooled_mapped"] = Conditioning(pooled(mapped), mapped, "manipulated", references)
    return plan


OPTIMISED = "optimised_"  # the optimiser's reconstructions: `optimised_mapped`, ...


@dataclasses.dataclass
class Inverter:
    """An inverter of feature maps with what scores its reconstructions, loaded once per job.

    FeatInv's reconstructions keep the plain names (`mapped`); the optimiser's carry the prefix
    OPTIMISED (`optimised_mapped`), and are compared with the optimiser's own reconstructions of
    the true features (`optimised_mapped_vs_optimised_reconstructed_manipulated`).
    """

    reconstruct: Callable[[np.ndarray], np.ndarray]  # (N, C, h, w) -> uint8 (N, R, R, 3)
    resolution: int  # R, the side of the reconstructions and of the reference images
    probe: BackboneProbe
    lpips: LPIPS
    prefix: str = ""  # "" for FeatInv, OPTIMISED for the optimiser

    def named(self, name: str) -> str:
        """The table's name of a reconstruction or reference image of this inverter."""
        return self.prefix + name if name.startswith(RECONSTRUCTIONS) else name

    def reference_images(self, inputs: InversionInputs) -> dict[str, np.ndarray]:
        """The original and manipulated images and the mean image at the model's resolution."""
        size = self.resolution
        images = {
            "original": tensor_to_images(images_to_tensor(inputs.original_images, size)),
            "manipulated": tensor_to_images(images_to_tensor(inputs.manipulated_images, size)),
        }
        images["mean_image"] = np.broadcast_to(inputs.mean_image, images["original"].shape).copy()
        return images

    def invert_and_score(
        self,
        plan: dict[str, Conditioning],
        images: dict[str, np.ndarray],
        logits: dict[str, np.ndarray],
        base: dict,
    ) -> tuple[list[dict], dict[str, np.ndarray]]:
        """Reconstruct every conditioning of `plan` and score it against its references.

        Every reconstruction of image i starts from the same noise (FeatInv) or image (the
        optimiser), so reconstructions differ only through their conditioning.

        Args:
            plan: Reconstructions to make, by name.
            images: Reference images by name (uint8 (N, R, R, 3) at the model's resolution).
            logits: The classifier's logits of the `original` and `manipulated` images.
            base: Columns every row carries (backbone, layer, manipulation, mapping).

        Returns:
            The metric rows (stage inversion, split test) and the reconstructions by name.
        """
        rows, reconstructions = [], {}
        for plain, conditioning in plan.items():
            name = self.named(plain)
            image = self.reconstruct(conditioning.features)
            reconstructions[name] = image
            known = {**images, **reconstructions}
            references = {self.named(r): known[self.named(r)] for r in conditioning.references}
            rows += _image_rows(self.lpips, name, image, references)
            features, predicted = self.probe(image)
            target = conditioning.target.astype(np.float32)
            cosine = metrics.cosine_median(features, target)
            rows.append(_row("cosine_median", f"{name}_vs_conditioning", cosine))
            agreement = metrics.top1_agreement(predicted, logits[conditioning.source])
            rows.append(_row("top1_agreement", f"{name}_vs_{conditioning.source}", agreement))
        rows = [metric_row(stage="inversion", split="test", **row, **base) for row in rows]
        return rows, reconstructions

    def baseline_rows(
        self, images: dict[str, np.ndarray], inputs: InversionInputs, base: dict
    ) -> list[dict]:
        """The floor and the ceiling of the scores. The floor: the mean train image against the
        originals. The ceiling: the originals themselves at the model's resolution
        (`resized_original`), read by the backbone, which sees them upsampled to its input size
        as it sees the reconstructions; a small model resolution caps the top-1 agreement and
        cosine any reconstruction can reach."""
        rows = _image_rows(
            self.lpips, "mean_image", images["mean_image"], {"original": images["original"]}
        )
        features, logits = self.probe(images["original"])
        cosine = metrics.cosine_median(features, inputs.original.astype(np.float32))
        rows.append(_row("cosine_median", "resized_original_vs_conditioning", cosine))
        agreement = metrics.top1_agreement(logits, inputs.original_logits)
        rows.append(_row("top1_agreement", "resized_original_vs_original", agreement))
        return [metric_row(stage="inversion", split="test", **row, **base) for row in rows]


def _row(metric: str, comparison: str, values: np.ndarray) -> dict:
    value, n = metrics.summarise(values)
    return {"metric": metric, "comparison": comparison, "value": value, "n": n}


def _image_rows(lpips: LPIPS, name: str, image: np.ndarray, references: dict) -> list[dict]:
    rows = []
    for reference, target in references.items():
        comparison = f"{name}_vs_{reference}"
        rows.append(_row("ssim", comparison, ssim(image, target)))
        rows.append(_row("mse", comparison, mse(image, target)))
        rows.append(_row(lpips.name, comparison, lpips(image, target)))
    return rows


# The feature and image stores of an inversion by role: `original`, `manipulated`,
# `original_images`, `manipulated_images` (see `load_inputs`).
StorePaths = dict[str, str | os.PathLike]


def load_inputs(
    original: str | os.PathLike,
    manipulated: str | os.PathLike,
    original_images: str | os.PathLike,
    manipulated_images: str | os.PathLike,
    layer: str,
    n_images: int,
    resolution: int,
) -> tuple[InversionInputs, np.ndarray]:
    """The first test images of a manipulation, their features and logits; and their indices.

    Args:
        original, manipulated: Feature stores of the original and manipulated image sets.
        original_images, manipulated_images: Their image stores.
        layer: The layer the FeatInv model inverts.
        n_images: How many test images.
        resolution: The model's image side (for the mean train image).
    """
    stores = FeatureStore(original), FeatureStore(manipulated)
    images = ImageStore(original_images), ImageStore(manipulated_images)
    if not (len(stores[0]) == len(stores[1]) == len(images[0]) == len(images[1])):
        raise ValueError(f"{original}, {manipulated} and their image stores differ in length")
    indices = images[1].first_test(n_images)  # a failed generative edit leaves the splits
    inputs = InversionInputs(
        original_images=images[0].images.get_orthogonal_selection((indices,)),
        manipulated_images=images[1].images.get_orthogonal_selection((indices,)),
        original=stores[0].read(layer, indices),
        manipulated=stores[1].read(layer, indices),
        original_logits=stores[0].logits.get_orthogonal_selection((indices,)),
        manipulated_logits=stores[1].logits.get_orthogonal_selection((indices,)),
        mean_image=mean_image(images[0], resolution),
    )
    return inputs, indices


def open_inputs(
    backbone: nn.Module, layer: str, stores: StorePaths, n_images: int, resolution: int
) -> tuple[BackboneProbe, InversionInputs, np.ndarray]:
    """The backbone that scores reconstructions, the test inputs and their store indices.

    Args:
        backbone: The backbone that made the features (for cosine and top-1 agreement).
        layer: The layer inverted.
        stores: `original` and `manipulated` feature stores, `original_images` and
            `manipulated_images` image stores (see `load_inputs`).
        n_images: How many test images.
        resolution: The reconstructions' side (for the mean train image).
    """
    preprocessing = FeatureStore(stores["original"]).attrs["preprocessing"]
    probe = BackboneProbe(backbone, layer, preprocessing)
    inputs, indices = load_inputs(
        stores["original"],
        stores["manipulated"],
        stores["original_images"],
        stores["manipulated_images"],
        layer,
        n_images,
        resolution,
    )
    return probe, inputs, indices


def open_inversion(
    model: str | os.PathLike,
    backbone: nn.Module,
    layer: str,
    stores: StorePaths,
    sampling: SampleSettings,
    n_images: int,
) -> tuple[Inverter, InversionInputs, np.ndarray]:
    """Load a FeatInv model, the backbone that scores its reconstructions, and the test inputs.

    Args:
        model: FeatInv model folder.
        backbone, layer, stores, n_images: As for `open_inputs`.
        sampling: How reconstructions are sampled.

    Returns:
        The inverter, the inputs and the store indices of the test images.
    """
    featinv = FeatInvModel.from_pretrained(model)
    resolution = featinv.settings.resolution
    probe, inputs, indices = open_inputs(backbone, layer, stores, n_images, resolution)
    inverter = Inverter(
        functools.partial(sample, featinv, settings=sampling), resolution, probe, LPIPS()
    )
    return inverter, inputs, indices


def open_optimisation(
    backbone: nn.Module,
    layer: str,
    stores: StorePaths,
    settings: OptimiseSettings,
    n_images: int,
    resolution: int,
) -> tuple[Inverter, InversionInputs, np.ndarray]:
    """The optimiser as an inverter, the backbone that it reads and scores with, and the inputs.

    Args:
        backbone, layer, stores, n_images: As for `open_inputs`.
        settings: How the optimiser runs.
        resolution: The optimised images' side (`featinv.model.resolution`, FeatInv's).

    Returns:
        The inverter, the inputs and the store indices of the test images.
    """
    probe, inputs, indices = open_inputs(backbone, layer, stores, n_images, resolution)
    reader = FeatureReader(
        probe.model, layer, probe.config["mean"], probe.config["std"], probe.input_size
    )

    def reconstruct(features: np.ndarray) -> np.ndarray:
        return optimise(reader, features, inputs.mean_image, settings).images

    return Inverter(reconstruct, resolution, probe, LPIPS(), OPTIMISED), inputs, indices


def invert_references(
    inverter: Inverter,
    inputs: InversionInputs,
    settings: InvertSettings,
    base: dict,
    baselines: bool = True,
) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Invert what every mapping of a (layer, manipulation) is compared with, once.

    Args:
        inverter, inputs, settings: The inverter, the test inputs and the controls to add.
        base: Columns every row carries.
        baselines: Add the floor and ceiling rows (`mean_image`, `resized_original`); the
            optimiser leaves them to FeatInv where both invert a cell, as they are the same.

    Returns:
        The metric rows (mapping column empty) and every image by name: the references, the
        mean image and the reconstructions of the reference plan.
    """
    images = inverter.reference_images(inputs)
    logits = {"original": inputs.original_logits, "manipulated": inputs.manipulated_logits}
    rows, reconstructions = inverter.invert_and_score(
        reference_plan(inputs, settings), images, logits, base
    )
    if baselines:
        rows = inverter.baseline_rows(images, inputs, base) + rows
    return rows, {**images, **reconstructions}


def invert_mapping(
    inverter: Inverter,
    inputs: InversionInputs,
    references: dict[str, np.ndarray],
    apply: Callable[[np.ndarray], np.ndarray],
    settings: InvertSettings,
    base: dict,
) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Invert one mapping's features (the mapping applied to the original features).

    Args:
        inverter: The model and scorers.
        inputs: The test images and features (as for `invert_references`).
        references: The images `invert_references` returned for the same test images.
        apply: The mapping, original feature maps (N, C, h, w) -> mapped ones.
        settings: Whether to add the pooled ablation.
        base: Columns every row carries.
    """
    mapped = np.asarray(apply(inputs.original), dtype=np.float32)
    if mapped.shape != inputs.manipulated.shape:
        raise ValueError(
            f"the mapping gives {mapped.shape}, the manipulated features are "
            f"{inputs.manipulated.shape}"
        )
    logits = {"manipulated": inputs.manipulated_logits}
    return inverter.invert_and_score(mapped_plan(mapped, settings), references, logits, base)


def save_images(
    path: str | os.PathLike, images: dict[str, np.ndarray], indices: np.ndarray
) -> None:
    """Images by name as uint8 safetensors, with the store indices of their rows."""
    tensors = {name: np.ascontiguousarray(value) for name, value in images.items()}
    tensors["image_index"] = np.asarray(indices, dtype=np.int64)
    with atomic_path(path) as temporary:
        save_file(tensors, temporary)


def load_images(path: str | os.PathLike, indices: np.ndarray) -> dict[str, np.ndarray]:
    """Images saved by `save_images`; they must belong to the test images at `indices`."""
    images = load_file(path)
    stored = images.pop("image_index")
    if not np.array_equal(stored, indices):
        raise ValueError(
            f"{path} holds other test images than this inversion (n_images changed?); "
            "delete it and rerun"
        )
    return images


def load_grid(files: dict[str, str | os.PathLike]) -> tuple[dict, dict]:
    """One cell's images for its grid figure, from the files of both inverters.

    Args:
        files: `references` (FeatInv's) and `optimised_references` (the optimiser's) image files
            of `invert_references`, and each mapping's of `invert_mapping` by the mapping's name,
            with the prefix OPTIMISED for the optimiser's (`ridge`, `optimised_ridge`).

    Returns:
        The reference images and reconstructions of the true features by name, and each
        mapping's reconstructions by name (`mapped`, `optimised_mapped`, ...).
    """
    references, mapped = {}, {}
    for key, path in files.items():
        images = load_file(path)
        images.pop("image_index")
        if key in ("references", OPTIMISED + "references"):
            references.update(images)
        else:
            mapped.setdefault(key.removeprefix(OPTIMISED), {}).update(images)
    return references, mapped
