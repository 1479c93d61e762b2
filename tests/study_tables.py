"""Synthetic metrics tables shaped like a finished study's, for drawing every figure in tests.

The rows carry the words the stages write (README, "The metrics table"); the values are drawn
to look like a study's: the identity baseline far below, the fitted maps within a few hundredths
of each other.
"""

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
from safetensors.numpy import save_file

from featlab.io import write_json
from featlab.lens import LensSettings
from featlab.tables import COLUMNS, MAPPINGS

MAX_FIGURE_SIDE = 2000  # pixels: the most a figure may be wide or high at the default dpi
GEOMETRIC = ("rot90", "rot180", "rot270", "flip_h", "flip_v")
LEVELS = {  # typical test cosine of each mapping, before noise
    "identity": 0.55,
    "spatial": 0.8,
    "additive": 0.6,
    "linear": 0.93,
    "ridge": 0.9,
    "procrustes": 0.86,
    "ridge_relative": 0.93,
    "procrustes_relative": 0.87,
    "local_linear": 0.94,
    "mlp": 0.95,
    "cnn": 0.96,
    "transformer": 0.95,
}


@dataclasses.dataclass(frozen=True)
class StudyShape:
    """What a study ran: its layers, manipulations, mappings, ranks and inverted layers."""

    layers: dict[str, tuple[str, ...]]
    manipulations: tuple[str, ...]
    mappings: tuple[str, ...] = MAPPINGS
    ranks: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    inverted: tuple[tuple[str, str], ...] = ()
    inverted_mappings: tuple[str, ...] = ("identity", "ridge", "linear")
    optimised: tuple[tuple[str, str], ...] = ()  # layers the optimiser inverts
    edited: tuple[str, ...] = ("rot90", "swap_class")  # manipulations of the edits stage


DEFAULT_STUDY = StudyShape(
    layers={"cnn": ("layer2", "layer3", "layer4"), "vit": ("blocks.1", "blocks.2", "blocks.3")},
    manipulations=(
        *GEOMETRIC,
        "hue60",
        "grayscale",
        "noise40",
        "square_red",
        "square_green",
        "square_blue",
        "square_yellow",
        "recolour",
        "swap_class",
    ),
    inverted=(("cnn", "layer4"), ("vit", "blocks.3")),
    inverted_mappings=("identity", "spatial", "ridge", "linear", "transformer"),
    optimised=(("cnn", "layer3"), ("cnn", "layer4"), ("vit", "blocks.2"), ("vit", "blocks.3")),
    edited=("hue60", "swap_class", "rot90"),
)
TINY_STUDY = StudyShape(
    layers={"cnn": ("layer2", "layer3"), "vit": ("blocks.1",)},
    manipulations=("rot90", "noise", "swap_class"),
    ranks=(1, 4),
    inverted=(("cnn", "layer3"),),
    optimised=(("cnn", "layer2"), ("cnn", "layer3")),
)


def _row(**columns) -> dict:
    return {column: columns.get(column, "") for column in COLUMNS}


def _mapping_rows(shape: StudyShape, rng: np.random.Generator) -> list[dict]:
    rows = []
    for backbone, layers in shape.layers.items():
        for depth, layer in enumerate(layers):
            for manipulation in shape.manipulations:
                geometric = manipulation in GEOMETRIC
                for mapping in shape.mappings:
                    if mapping == "spatial" and not geometric:
                        continue  # the spatial baseline applies to rotations and flips only
                    level = LEVELS[mapping] - 0.03 * depth + rng.normal(0, 0.01)
                    comparison = "mapped_vs_manipulated"
                    if mapping == "procrustes" and geometric:
                        comparison += "_spatial_first"
                    for metric in ("cosine_median", "cosine_masked", "mse"):
                        value = level if metric != "mse" else 1 - level
                        rows.append(
                            _row(
                                stage="mapping",
                                backbone=backbone,
                                layer=layer,
                                manipulation=manipulation,
                                mapping=mapping,
                                comparison=comparison,
                                split="test",
                                metric=metric,
                                value=min(value, 0.999),
                                n=400,
                            )
                        )
    return rows


def _analysis_rows(shape: StudyShape, rng: np.random.Generator) -> list[dict]:
    rows = []
    for backbone, layers in shape.layers.items():
        for layer in layers:
            for manipulation in shape.manipulations:
                for mapping in ("ridge", "procrustes", "linear"):
                    spatial = mapping == "procrustes" and manipulation in GEOMETRIC
                    space = "standardised" + ("_spatial_first" if spatial else "")
                    base = dict(backbone=backbone, layer=layer, manipulation=manipulation)
                    base.update(mapping=mapping, stage="analysis", n=400)
                    rows.append(
                        _row(
                            **base,
                            comparison=space,
                            metric="effective_rank",
                            value=rng.uniform(5, 60),
                        )
                    )
                    rows.append(
                        _row(
                            **base,
                            comparison=space,
                            split="test",
                            metric="bias_share",
                            value=rng.uniform(0, 0.5),
                        )
                    )
                    for i, k in enumerate(shape.ranks):
                        value = 0.9 - 0.5 * 0.6**i + rng.normal(0, 0.01)
                        comparison = f"standardised_rank_{k}" + (
                            "_spatial_first" if spatial else ""
                        )
                        rows.append(
                            _row(
                                **base,
                                comparison=comparison,
                                split="test",
                                metric="cosine_median",
                                value=value,
                            )
                        )
    return rows


def _lens_rows(rng: np.random.Generator) -> list[dict]:
    rows = []
    for case in ("circle_to_square_0", "square_to_triangle_0"):
        base = dict(stage="lens", backbone="cnn", manipulation=case, split="test", n=1)
        for metric in (
            "target_probability",
            "transfer_probability",
            "warp_share",
            "warp_gain_share",
        ):
            rows.append(_row(**base, comparison="source", metric=metric, value=rng.uniform(0, 0.1)))
            for method in (
                "steerable_phase",
                "steerable_phase_amplitude",
                "fourier_phase",
                "pixel",
            ):
                for variant in ("one_step", "iterative"):
                    for budget in (2, 4):
                        comparison = f"{method}_{variant}_l2_{budget}"
                        value = rng.uniform(0, 1)
                        rows.append(_row(**base, comparison=comparison, metric=metric, value=value))
    return rows


def _inversion_rows(shape: StudyShape, rng: np.random.Generator) -> list[dict]:
    references = (
        "reconstructed_original_vs_original",
        "reconstructed_manipulated_vs_manipulated",
        "reconstructed_original_vs_conditioning",
        "pooled_original_vs_original",
        "perturbed_x1_vs_original",
    )
    mapped = ("mapped_vs_manipulated", "mapped_vs_reconstructed_manipulated")
    baselines = ("mean_image_vs_original", "resized_original_vs_original")
    rows = []
    for backbone, layer in dict.fromkeys(shape.inverted + shape.optimised):
        prefixes = [
            p
            for p, c in (("", shape.inverted), ("optimised_", shape.optimised))
            if (backbone, layer) in c
        ]
        for manipulation in shape.manipulations[:4]:
            base = dict(stage="inversion", backbone=backbone, layer=layer, split="test", n=64)
            base.update(manipulation=manipulation)
            for metric in ("ssim", "cosine_median", "top1_agreement"):
                named = [p + c for p in prefixes for c in references]
                for comparison in (*baselines, *named):
                    value = rng.uniform(0.5, 1)
                    rows.append(_row(**base, comparison=comparison, metric=metric, value=value))
                for mapping in shape.inverted_mappings:
                    for comparison in (
                        p + c.replace("_vs_r", f"_vs_{p}r") for p in prefixes for c in mapped
                    ):
                        value = rng.uniform(0.5, 1)
                        rows.append(
                            _row(
                                **base,
                                mapping=mapping,
                                comparison=comparison,
                                metric=metric,
                                value=value,
                            )
                        )
    return rows


def _edit_rows(shape: StudyShape, rng: np.random.Generator) -> list[dict]:
    """Target probabilities of the edits stage on each inverted layer (its default cells)."""
    names = [f"{kind}_x{a:g}" for kind in ("extrapolated", "perturbed") for a in (-1, 0.5, 1, 2)]
    names += [f"reconstructed_{name}" for name in names] + ["truncated_k1"]
    rows = []
    for backbone, layer in shape.inverted:
        for manipulation in shape.edited:
            base = dict(stage="edits", backbone=backbone, layer=layer, manipulation=manipulation)
            base.update(split="test", metric="target_probability", n=64)
            for name in ("original", "manipulated"):
                rows.append(_row(**base, comparison=name, value=rng.uniform(0, 1)))
            for mapping in ("ridge", "linear"):
                for name in names:
                    value = rng.uniform(0, 1)
                    rows.append(_row(**base, mapping=mapping, comparison=name, value=value))
    return rows


def synthetic_table(shape: StudyShape, seed: int = 0) -> pd.DataFrame:
    """A metrics table of every stage a figure is drawn from, read back as the scripts read it."""
    rng = np.random.default_rng(seed)
    rows = _mapping_rows(shape, rng) + _analysis_rows(shape, rng)
    rows += _lens_rows(rng) + _inversion_rows(shape, rng) + _edit_rows(shape, rng)
    table = pd.DataFrame(rows, columns=list(COLUMNS)).assign(study="synthetic")
    # as the workflow scripts read metrics.csv: empty strings are missing values
    return table.replace("", np.nan)


def write_lens_case(
    folder: Path, image_size: int, budgets: tuple[float, ...], frames: int, seed: int = 0
) -> tuple[Path, Path]:
    """A lens case's frames and morph records as the lens stage stores them (LensSettings'
    methods and variants at the given budgets), with random pictures."""
    rng = np.random.default_rng(seed)
    records, pictures = [{"comparison": "source", "method": None}], {}
    for method in LensSettings.methods:
        for variant in LensSettings.variants:
            for budget in budgets:
                comparison = f"{method}_{variant}_l2_{budget:g}"
                shape = (frames, image_size, image_size, 3)
                pictures[comparison] = rng.integers(0, 256, shape, dtype=np.uint8)
                probabilities = rng.uniform(0, 1, frames).tolist()
                records.append(
                    dict(
                        comparison=comparison,
                        method=method,
                        variant=variant,
                        budget=budget,
                        frame_target_probability=probabilities,
                    )
                )
    frames_path, morphs_path = folder / "frames.safetensors", folder / "morphs.json"
    save_file(pictures, frames_path)
    write_json(morphs_path, {"backbone": "cnn", "case": "circle_to_square_0", "records": records})
    return frames_path, morphs_path
