"""What the backbone and FeatInv make of magnified and truncated feature-space edits.

For one (backbone, layer, manipulation) cell and each affine mapping fitted there, the edit
E(x) = f(x) - x of the first test originals is extrapolated, truncated and replaced by noise
(`operators`), the rest of the backbone runs on each resulting feature map (as semantic
consistency does, `mapping.semantic`), and, where the layer has a FeatInv model, each map is
inverted from the same starting noise. Rows have stage `edits`, split `test`, and the mapping
in `mapping`; `comparison` names the feature map read:

feature maps
  extrapolated_x{alpha}  x + alpha E(x) (x1 is the mapping itself, x0 the original)
  truncated_k{k}         x + P_k E(x): the edit cut to its k leading output directions
  perturbed_x{alpha}     x + noise of norm ||alpha E(x)|| per image (the control; alpha != 0)
  feature_lens_x{alpha}  x moved along the gradient of the target class's log-probability with
                         respect to x by ||alpha E(x)|| per image (alpha > 0): the feature-space
                         lens at the size of the magnified edit (`edits.lens`)
  original, manipulated  the images themselves (the store's logits; mapping empty)
  reconstructed_{map}    FeatInv's reconstruction of one of the maps above, read by the backbone

the two lenses side by side (`edits.lenses`; mapping empty; the first invert_images images, where
the head's classes are the data's)
  input_lens             the input-space steerable lens: the original image morphed toward the
                         target class (iterative steerable phase, image L2 edits.lens_budget)
  feature_lens_matched   the feature-space lens at the morph's feature-space size: x moved along
                         the gradient by ||F(morph) - x|| per image
  reconstructed_feature_lens_matched  FeatInv's reconstruction of it
  {image}_read_by_{other}  the same image (original, manipulated, input_lens or
                         reconstructed_feature_lens_matched) read by another backbone of the study
                         whose classes are the data's, preprocessed as its feature store was
                         (transfer); its top1_agreement is against that backbone's reading of the
                         manipulated image

metrics
  target_probability   probability of the manipulated image's class (a counterfactual's target
                       class; the original class for an edit that keeps it)
  source_probability   probability of the original image's class
  entropy              bits, of the class probabilities
  top1_agreement       comparison `{map}_vs_manipulated`: the map's top-1 class against the
                       manipulated image's
  cosine_median        comparison `{map}_vs_manipulated`: against the true manipulated features;
                       for reconstructions `{map}_vs_conditioning`: the backbone's features of the
                       reconstruction against the map it was reconstructed from
  edit_energy          comparison `truncated_k{k}`: the share of the edit's squared norm on the
                       directions' reference images that the k leading directions hold
  l2_distance          comparison `input_lens`: the morph's image-space L2 change, pixels in
                       [0, 1] over all channels (the budget)
  feature_norm         comparisons `input_lens` and `feature_lens_matched`: the feature-space L2
                       change at the layer, ||F(morph) - x|| and ||lens - x|| (equal: matched)

The probability rows need the head's classes to be the data's (`labels_match`); the others are
written for every backbone. The extrapolated x1 rows equal the mapping's semantic-consistency rows
on the same test images.
"""

import dataclasses
import os
from collections.abc import Callable

import numpy as np
import torch
from safetensors.numpy import save_file
from torch import nn

from featlab import metrics
from featlab.data.images import ImageStore
from featlab.edits.lens import feature_lens, target_gradient
from featlab.edits.lenses import lens_pair, logits_of, morph_settings, reader_of, to_uint8
from featlab.edits.operators import EditDirections, edit_of, extrapolate, matched_noise
from featlab.edits.settings import EditSettings
from featlab.featinv.evaluate import BackboneProbe
from featlab.featinv.model import FeatInvModel
from featlab.featinv.sample import SampleSettings, sample
from featlab.featinv.train import images_to_tensor, tensor_to_images
from featlab.io import atomic_path
from featlab.lens import Classifier, LensSettings
from featlab.mapping.models import mapping_function, token_function
from featlab.mapping.semantic import logits_of_features, read_held_out
from featlab.store import FeatureStore
from featlab.tables import metric_row


@dataclasses.dataclass
class CellInputs:
    """The test originals of a cell and what the manipulation made of them."""

    original: np.ndarray  # (N, C, H, W) test original features
    prefix: np.ndarray | None  # (N, P, C) their class/register tokens (token models)
    manipulated: np.ndarray  # (N, C, H, W) true manipulated features
    original_logits: np.ndarray  # (N, K)
    manipulated_logits: np.ndarray  # (N, K)
    source: np.ndarray  # (N,) the original images' classes
    target: np.ndarray  # (N,) the manipulated images' classes
    reference: np.ndarray  # (M, C, H, W) train originals, for the edit's directions
    images: np.ndarray  # uint8 (N, H, W, 3) original test images
    manipulated_images: np.ndarray  # uint8 (N, H, W, 3)
    indices: np.ndarray  # store positions of the test images


def load_cell(stores: dict, layer: str, settings: EditSettings) -> CellInputs:
    """Read a cell's inputs from the `original` and `manipulated` feature stores and the
    `original_images` and `manipulated_images` image stores."""
    original = FeatureStore(stores["original"])
    images = ImageStore(stores["original_images"]), ImageStore(stores["manipulated_images"])
    indices = images[1].first_test(settings.n_images)  # a failed edit leaves the splits
    source = read_held_out(original, images[0], layer, indices)
    target = read_held_out(FeatureStore(stores["manipulated"]), images[1], layer, indices)
    train = images[0].indices("train")[: settings.direction_images]
    return CellInputs(
        original=source.maps,
        prefix=source.prefix,
        manipulated=target.maps,
        original_logits=source.logits,
        manipulated_logits=target.logits,
        source=source.labels,
        target=target.labels,
        reference=original.read(layer, train),
        images=images[0].images.get_orthogonal_selection((indices,)),
        manipulated_images=images[1].images.get_orthogonal_selection((indices,)),
        indices=indices,
    )


@dataclasses.dataclass
class EditedMaps:
    """The feature maps made from one mapping's edit, by comparison name, with their prefix
    tokens (None: the original's), the directions' energy shares and ||E(x)|| per image."""

    maps: dict[str, np.ndarray]
    prefixes: dict[str, np.ndarray | None]
    energy: dict[int, float]
    norms: np.ndarray  # (N,)


def edited_maps(
    inputs: CellInputs,
    mapping: Callable[[np.ndarray], np.ndarray],
    tokens: Callable[[np.ndarray], np.ndarray] | None,
    settings: EditSettings,
) -> EditedMaps:
    """Every extrapolation, truncation and control of one mapping's edit of the test originals.

    A positionwise mapping's prefix tokens are edited alike (`tokens`); otherwise the original's
    stay in front of the edited grid.
    """
    edit = edit_of(mapping)
    displacement = edit(inputs.original)  # (N, C, H, W)
    directions = EditDirections.of(edit(inputs.reference))
    prefix, prefix_edit = inputs.prefix, None
    if prefix is not None and tokens is not None:
        prefix_edit = np.asarray(tokens(prefix), dtype=np.float64) - prefix
    maps, prefixes = {}, {}
    for alpha in settings.alphas:
        name = f"extrapolated_x{alpha:g}"
        maps[name] = extrapolate(inputs.original, displacement, alpha)
        prefixes[name] = prefix if prefix_edit is None else extrapolate(prefix, prefix_edit, alpha)
    channels = inputs.original.shape[1]
    ranks = [k for k in settings.ranks if k <= channels]
    for k in ranks:
        name = f"truncated_k{k}"
        maps[name] = extrapolate(inputs.original, directions.truncate(displacement, k), 1.0)
        prefixes[name] = prefix
        if prefix_edit is not None:  # (N, P, C) -> (N, C, P, 1) and back
            cut = directions.truncate(prefix_edit.transpose(0, 2, 1)[..., None], k)
            prefixes[name] = extrapolate(prefix, cut[..., 0].transpose(0, 2, 1), 1.0)
    for alpha in settings.alphas:
        if alpha != 0:
            noise = matched_noise(displacement, alpha, settings.seed)
            maps[f"perturbed_x{alpha:g}"] = extrapolate(inputs.original, noise, 1.0)
            prefixes[f"perturbed_x{alpha:g}"] = prefix
    energy = {k: float(directions.energy[:k].sum()) for k in ranks}
    norms = np.sqrt(np.square(displacement).sum(axis=(1, 2, 3)))
    return EditedMaps(maps, prefixes, energy, norms)


def add_feature_lens(
    edited: EditedMaps, inputs: CellInputs, gradient: np.ndarray, settings: EditSettings
) -> None:
    """Add the feature-space lens at each positive alpha, `feature_lens_x{alpha}`: the originals
    moved along the gradient of the target class's log-probability by ||alpha E(x)|| per image,
    the size of the magnified edit (the original's prefix tokens stay). None where a gradient is
    zero: the layer's grid does not reach the output (a ViT's last block)."""
    if not np.all(np.abs(gradient).sum(axis=(1, 2, 3)) > 0):
        return
    steps = tuple(alpha for alpha in settings.alphas if alpha > 0)
    for name, maps in feature_lens(inputs.original, gradient, edited.norms, steps).items():
        edited.maps[name], edited.prefixes[name] = maps, inputs.prefix


def _row(metric: str, comparison: str, values: np.ndarray, base: dict) -> dict:
    value, n = metrics.summarise(values)
    return metric_row("edits", metric, value, n, comparison=comparison, split="test", **base)


def class_rows(
    name: str, logits: np.ndarray, inputs: CellInputs, labels_match: bool, base: dict
) -> list[dict]:
    """Entropy and top-1 agreement with the manipulated image; probabilities of the source and
    target classes where the head's classes are the data's."""
    rows = [
        _row("entropy", name, metrics.entropy(logits), base),
        _row(
            "top1_agreement",
            f"{name}_vs_manipulated",
            metrics.top1_agreement(logits, inputs.manipulated_logits),
            base,
        ),
    ]
    if labels_match:
        probabilities = metrics.softmax(logits)
        rows += [
            _row("target_probability", name, _pick(probabilities, inputs.target), base),
            _row("source_probability", name, _pick(probabilities, inputs.source), base),
        ]
    return rows


def _pick(probabilities: np.ndarray, classes: np.ndarray) -> np.ndarray:
    return probabilities[np.arange(len(classes)), classes]


def reference_rows(inputs: CellInputs, labels_match: bool, base: dict) -> list[dict]:
    """Rows of the original and manipulated images themselves."""
    rows = []
    for name, logits in (
        ("original", inputs.original_logits),
        ("manipulated", inputs.manipulated_logits),
    ):
        rows += class_rows(name, logits, inputs, labels_match, base)
    return rows


def mapping_rows(
    model: nn.Module,
    layer: str,
    inputs: CellInputs,
    edited: EditedMaps,
    input_size: tuple[int, int] | None,
    settings: EditSettings,
    labels_match: bool,
    base: dict,
) -> list[dict]:
    """The backbone's reading of every edited map of one mapping, and its feature cosines."""
    rows = []
    for name, maps in edited.maps.items():
        logits = logits_of_features(
            model, layer, maps, edited.prefixes[name], input_size, settings.batch_size
        )
        rows += class_rows(name, logits, inputs, labels_match, base)
        cosine = metrics.cosine_median(maps, inputs.manipulated)
        rows.append(_row("cosine_median", f"{name}_vs_manipulated", cosine, base))
    for k, share in edited.energy.items():
        n = len(inputs.reference)
        rows.append(_row_of("edit_energy", f"truncated_k{k}", share, n, base))
    return rows


def _row_of(metric: str, comparison: str, value: float, n: int, base: dict) -> dict:
    return metric_row("edits", metric, value, n, comparison=comparison, split="test", **base)


@dataclasses.dataclass
class EditInverter:
    """A layer's FeatInv model and the backbone that reads its reconstructions."""

    model: FeatInvModel
    sampling: SampleSettings
    probe: BackboneProbe

    def invert(
        self,
        maps: dict[str, np.ndarray],
        inputs: CellInputs,
        labels_match: bool,
        base: dict,
    ) -> tuple[list[dict], dict[str, np.ndarray]]:
        """Reconstruct each map (image i always from the same starting noise, the references'
        too), and read each reconstruction with the backbone."""
        rows, images = [], {}
        for name, conditioning in maps.items():
            image = sample(self.model, conditioning, self.sampling)
            images[name] = image
            features, logits = self.probe(image)
            reading = f"reconstructed_{name}"
            n = len(image)
            part = dataclasses.replace(
                inputs,
                manipulated_logits=inputs.manipulated_logits[:n],
                source=inputs.source[:n],
                target=inputs.target[:n],
            )
            rows += class_rows(reading, logits, part, labels_match, base)
            cosine = metrics.cosine_median(features, conditioning.astype(np.float32))
            rows.append(_row("cosine_median", f"{reading}_vs_conditioning", cosine, base))
        return rows, images

    def resized(self, images: np.ndarray) -> np.ndarray:
        """Images at the model's resolution, uint8 (N, R, R, 3)."""
        return tensor_to_images(images_to_tensor(images, self.model.settings.resolution))


def first(inputs: CellInputs, n: int) -> CellInputs:
    """The cell's first n test images (the reference maps stay)."""
    fields = [f.name for f in dataclasses.fields(inputs) if f.name != "reference"]
    return dataclasses.replace(inputs, **{name: _head(getattr(inputs, name), n) for name in fields})


def _head(value: np.ndarray | None, n: int) -> np.ndarray | None:
    return None if value is None else value[:n]


def compare_lenses(
    driver: Classifier,
    layer: str,
    inputs: CellInputs,
    gradient: np.ndarray,
    lens: LensSettings,
    base: dict,
    inverter: EditInverter | None = None,
    readers: dict[str, Classifier] | None = None,
    batch_size: int = 128,
) -> tuple[list[dict], dict[str, np.ndarray]]:
    """The two lenses side by side (`edits.lenses`) on every image of `inputs`.

    Returns the rows of the driver and of the transfer `readers`; and images: the morphs
    (`input_lens`), the reconstructions of the matched feature lens (`inverter`) and the driver's
    per-image target probabilities (`target_probability.{image}`). The driver's head's classes
    must be the data's.
    """
    # 1. Both lenses, read by the driver
    pair = lens_pair(driver, layer, inputs.images, inputs.original, gradient, inputs.target, lens)
    rows = class_rows("input_lens", pair.logits, inputs, True, base)
    rows += [
        _row("l2_distance", "input_lens", pair.l2, base),
        _row("feature_norm", "input_lens", pair.norms, base),
        _row(
            "cosine_median",
            "input_lens_vs_manipulated",
            metrics.cosine_median(pair.features, inputs.manipulated),
            base,
        ),
    ]
    images = {"input_lens": to_uint8(pair.morphs)}
    logits = {
        "original": inputs.original_logits,
        "manipulated": inputs.manipulated_logits,
        "input_lens": pair.logits,
    }
    if pair.matched is not None:
        name = "feature_lens_matched"
        read = logits_of_features(
            driver.model, layer, pair.matched, inputs.prefix, driver_size(driver), batch_size
        )
        moved = np.sqrt(np.square(pair.matched - inputs.original).sum(axis=(1, 2, 3)))
        rows += class_rows(name, read, inputs, True, base)
        rows += [
            _row("feature_norm", name, moved, base),
            _row(
                "cosine_median",
                f"{name}_vs_manipulated",
                metrics.cosine_median(pair.matched, inputs.manipulated),
                base,
            ),
        ]
        # 2. FeatInv's reconstruction of the matched feature lens
        if inverter is not None:
            found, made = inverter.invert({name: pair.matched}, inputs, True, base)
            rows += found
            images[f"reconstructed_{name}"] = made[name]
            logits[f"reconstructed_{name}"] = logits_of(driver, made[name])
    # 3. Transfer: every other reader on the same images
    shown = {"original": inputs.images, "manipulated": inputs.manipulated_images, **images}
    rows += transfer_rows(readers or {}, {**shown, "input_lens": pair.morphs}, inputs, base)
    if inverter is not None:
        images["input_lens"] = inverter.resized(images["input_lens"])
    for name, value in logits.items():
        probability = _pick(metrics.softmax(value), inputs.target)
        images[f"target_probability.{name}"] = probability.astype(np.float32)
    return rows, images


def transfer_rows(
    readers: dict[str, Classifier], images: dict[str, np.ndarray], inputs: CellInputs, base: dict
) -> list[dict]:
    """Each reader's rows of each image set, `{image}_read_by_{reader}`; its top-1 agreement is
    with its own reading of the manipulated images (one of `images`)."""
    rows = []
    for other, reader in readers.items():
        read = {name: logits_of(reader, value) for name, value in images.items()}
        own = dataclasses.replace(inputs, manipulated_logits=read["manipulated"])
        for name, logits in read.items():
            rows += class_rows(f"{name}_read_by_{other}", logits, own, True, base)
    return rows


def driver_size(driver: Classifier) -> tuple[int, int] | None:
    """(height, width) of the images the driver reads, for `forward_from_layer`."""
    return None if driver.input_size is None else (driver.input_size, driver.input_size)


def open_inverter(
    path: str | os.PathLike, backbone: nn.Module, layer: str, store: str, sampling: SampleSettings
) -> EditInverter:
    """Load a FeatInv model, with the backbone (preprocessed as `store` was) as its reader."""
    preprocessing = FeatureStore(store).attrs["preprocessing"]
    probe = BackboneProbe(backbone, layer, preprocessing)
    return EditInverter(FeatInvModel.from_pretrained(path), sampling, probe)


def edit_cell(
    model: nn.Module,
    layer: str,
    stores: dict,
    maps: dict[str, str],
    settings: EditSettings,
    labels_match: bool,
    base: dict,
    inverter: EditInverter | None = None,
    lens: LensSettings | None = None,
    readers: dict[str, Classifier] | None = None,
) -> tuple[list[dict], dict[str, np.ndarray], np.ndarray]:
    """The rows and images of one (backbone, layer, manipulation) cell.

    Args:
        model: The backbone (eval mode) whose features are edited.
        layer: The edited layer.
        stores: Feature and image stores (see `load_cell`).
        maps: Map file by mapping name (affine maps: ridge, linear, ...).
        settings: Alphas, ranks and images.
        labels_match: Whether the head's classes are the data's (probability rows).
        base: Columns every row carries (backbone, layer, manipulation).
        inverter: The layer's FeatInv model, or None where it has none.
        lens: The input-space lens's morph (`edits.lenses.morph_settings`); by default the lens
            stage's defaults at `settings.lens_budget`.
        readers: The other backbones that read the two lenses for transfer, by name, each
            reading images as its feature store did (`edits.lenses.reader_of`).

    Returns:
        The metric rows; images by name: `original`, `manipulated`, and where inverted
        `reconstructed_manipulated` and `{mapping}/{map}` for each reconstructed map; the two
        lenses' `input_lens` and `reconstructed_feature_lens_matched` with the driver's
        `target_probability.{image}` of each shown image; and the store indices of the test images.
    """
    # 1. Inputs, and the image size that produced the features
    if settings.threads:
        torch.set_num_threads(settings.threads)
    inputs = load_cell(stores, layer, settings)
    driver = reader_of(model, FeatureStore(stores["original"]).attrs["preprocessing"])
    input_size = driver_size(driver)
    rows = reference_rows(inputs, labels_match, base)
    images = {"original": inputs.images, "manipulated": inputs.manipulated_images}
    shown = slice(0, settings.invert_images)
    if inverter is not None and settings.invert_images:
        images = {name: inverter.resized(value[shown]) for name, value in images.items()}
        found, made = inverter.invert(
            {"manipulated": inputs.manipulated[shown]}, inputs, labels_match, base
        )
        rows += found
        images["reconstructed_manipulated"] = made["manipulated"]
    gradient = target_gradient(
        model, layer, inputs.original, inputs.prefix, inputs.target, input_size
    )
    # 2. The two lenses side by side, on the shown images
    if labels_match and settings.invert_images:
        lens = lens or morph_settings({}, settings.lens_budget)
        found, made = compare_lenses(
            driver,
            layer,
            first(inputs, settings.invert_images),
            gradient[shown],
            lens,
            base,
            inverter,
            readers,
            settings.batch_size,
        )
        rows += found
        images.update(made)
    # 3. Per mapping: edit (and the feature-space lens at the edit's norm), read, invert
    for mapping, path in maps.items():
        function, _ = mapping_function(mapping, path, None)
        edited = edited_maps(inputs, function, token_function(mapping, path), settings)
        add_feature_lens(edited, inputs, gradient, settings)
        cell = {**base, "mapping": mapping}
        rows += mapping_rows(model, layer, inputs, edited, input_size, settings, labels_match, cell)
        if inverter is not None and settings.invert_images:
            chosen = {name: value[shown] for name, value in edited.maps.items()}
            found, made = inverter.invert(chosen, inputs, labels_match, cell)
            rows += found
            images.update({f"{mapping}/{name}": image for name, image in made.items()})
    return rows, images, inputs.indices


def save_images(path: str | os.PathLike, images: dict[str, np.ndarray], indices: np.ndarray):
    """Images by name as uint8 safetensors, with the store indices of the test images."""
    tensors = {name: np.ascontiguousarray(value) for name, value in images.items()}
    tensors["image_index"] = np.asarray(indices, dtype=np.int64)
    with atomic_path(path) as temporary:
        save_file(tensors, temporary)
