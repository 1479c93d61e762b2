"""Lens cases: which test image is morphed toward which class, every morph of a case, its
readings by every classifier and its files."""

import dataclasses
import os

import numpy as np
import torch
from safetensors.numpy import save_file

from featlab.data import shapes
from featlab.data.images import ImageStore
from featlab.io import atomic_path, write_json
from featlab.lens.classifier import Classifier, objective_of
from featlab.lens.edits import make_edit
from featlab.lens.morphs import iterative, one_step
from featlab.lens.settings import LensSettings, comparison_name
from featlab.lens.warp import explained_share
from featlab.tables import metric_row

ROW_METRICS = (
    "target_probability",
    "target_top1",
    "transfer_probability",
    "transfer_top1",
    "warp_share",
    "warp_gain_share",
    "l2_distance",
)


@dataclasses.dataclass
class CaseResult:
    frames: dict[str, np.ndarray]  # comparison -> (frames, H, W, 3) uint8
    records: list[dict]  # one per morph: its numbers and per-frame readings

    def save(self, frames_path: str | os.PathLike, morphs_path: str | os.PathLike, info: dict):
        """The frames as safetensors; the records, with the case's `info`, as JSON."""
        with atomic_path(frames_path) as temporary:
            save_file(self.frames, temporary)
        write_json(morphs_path, {**info, "records": self.records})

    def metric_rows(self, backbone: str, case: str) -> list[dict]:
        """Rows of stage `lens`: `manipulation` the case, `comparison` the morph."""
        rows = []
        for record in self.records:
            for metric in ROW_METRICS:
                if record.get(metric) is not None:
                    rows.append(
                        metric_row(
                            "lens",
                            metric,
                            record[metric],
                            1,
                            backbone=backbone,
                            manipulation=case,
                            comparison=record["comparison"],
                            split="test",
                        )
                    )
        return rows


def morph_case(
    driver: Classifier,
    others: dict[str, Classifier],
    image: np.ndarray,
    target: int,
    settings: LensSettings,
) -> CaseResult:
    """Morph one uint8 (H, W, 3) image toward `target` with every method, variant and budget.

    Args:
        driver: The classifier whose gradient drives the morphs.
        others: The study's other classifiers, by backbone name, read on the final frames.
        image: The source image.
        target: The target class index.
        settings: Methods, variants, budgets and the warp fit.
    """
    # 1. The source and the objective.
    if settings.threads:
        torch.set_num_threads(settings.threads)
    source = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None].float() / 255
    objective = objective_of(driver, target, settings.objective)
    # 2. Every morph: comparison -> Morph.
    morphs, keys = {}, []
    for method in settings.methods:
        edit = make_edit(method, source, settings)
        for variant in settings.variants:
            walk = one_step if variant == "one_step" else iterative
            for budget, morph in walk(edit, objective, settings, f"{method} {variant}").items():
                key = comparison_name(method, variant, budget)
                morphs[key] = morph
                keys.append((key, method, variant, budget))
    # 3. The driver on every frame; the other classifiers on the source and the final frames.
    frames = torch.stack([morphs[key].frames for key, *_ in keys])  # (M, T, 3, H, W)
    finals = frames[:, -1]  # (M, 3, H, W)
    driven = driver.probabilities(frames.flatten(0, 1)).reshape(*frames.shape[:2], -1)
    others_read = {name: c.probabilities(torch.cat([source, finals])) for name, c in others.items()}
    # 4. How much of each final change a smooth warp, and warp plus gain, explain.
    sources = source.expand_as(finals)
    warp = explained_share(sources, finals, settings.warp, gain=False)
    warp_gain = explained_share(sources, finals, settings.warp, gain=True)
    # 5. One record per morph, and one for the source itself.
    records = [_record("source", None, None, None, driven[0, 0], others_read, 0, target)]
    for m, (key, method, variant, budget) in enumerate(keys):
        record = _record(key, method, variant, budget, driven[m, -1], others_read, m + 1, target)
        record.update(
            l2_distance=morphs[key].l2,
            amplification=morphs[key].amplification,
            extension=morphs[key].extension,
            warp_share=float(warp[m]),
            warp_gain_share=float(warp_gain[m]),
            frame_target_probability=driven[m, :, target].tolist(),
            frame_top1=driven[m].argmax(1).tolist(),
        )
        records.append(record)
    pixels = (frames.permute(0, 1, 3, 4, 2) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    return CaseResult({key: pixels[m] for m, (key, *_) in enumerate(keys)}, records)


def _record(
    comparison: str,
    method: str | None,
    variant: str | None,
    budget: float | None,
    probabilities: np.ndarray,
    others_read: dict[str, np.ndarray],
    row: int,
    target: int,
) -> dict:
    """The driver's and the other classifiers' readings of one image (row `row` of others_read)."""
    transfer = {
        name: {
            "target_probability": float(read[row, target]),
            "top1": int(read[row].argmax()),
        }
        for name, read in others_read.items()
    }
    return {
        "comparison": comparison,
        "method": method,
        "variant": variant,
        "budget": budget,
        "target_probability": float(probabilities[target]),
        "target_top1": float(probabilities.argmax() == target),
        "top1": int(probabilities.argmax()),
        "transfer": transfer,
        # The mean over the other backbones (None without any).
        "transfer_probability": _mean([t["target_probability"] for t in transfer.values()]),
        "transfer_top1": _mean([float(t["top1"] == target) for t in transfer.values()]),
    }


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


# --- Cases: which image, which target ------------------------------------------------------------


@dataclasses.dataclass
class Case:
    image: np.ndarray  # (H, W, 3) uint8, from the test split
    source: int  # the source image's label
    target: int  # the target class
    info: dict  # what the case's morphs.json records about it


def load_case(store: ImageStore, case: dict) -> Case:
    """The configured case {source, target, image}: the `image`-th test image of class `source`
    (a class name of the data set, or an index), to be morphed toward class `target`."""
    classes = shapes.CLASSES if store.attrs.get("source") == "shapes" else None
    source, target = (_class_index(case[key], classes) for key in ("source", "target"))
    if source == target:
        raise ValueError(f"lens case {case}: the target class must differ from the source class")
    positions = np.flatnonzero((store.labels == source) & (store.splits == "test"))
    image = case.get("image", 0)
    if image >= len(positions):
        raise ValueError(
            f"lens case {case}: the test split of {store.path} has {len(positions)} images of "
            f"class {case['source']}"
        )
    position = int(positions[image])
    info = {
        "source": case["source"],
        "target": case["target"],
        "image": image,
        "source_label": source,
        "target_label": target,
        "image_id": str(store.image_ids[position]),
        "store_position": position,
    }
    return Case(store.images[position], source, target, info)


def _class_index(name: str | int, classes: tuple[str, ...] | None) -> int:
    if isinstance(name, int):
        return name
    if classes is None or name not in classes:
        raise ValueError(f"lens case class {name!r} is not one of the data set's classes {classes}")
    return classes.index(name)
