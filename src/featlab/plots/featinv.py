"""FeatInv figures: reconstructions of test images, and their scores by comparison."""

import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from featlab.plots.base import (
    PlotSettings,
    colour_map,
    panel_layers,
    save_figure,
    select_rows,
)
from featlab.tables import MAPPINGS as MAPPING_ORDER

FEATINV_COLUMNS = (
    ("original", "original"),
    ("manipulated", "manipulated"),
    ("reconstructed_original", "recon. original"),
    ("reconstructed_manipulated", "recon. manipulated"),
)


def plot_featinv_grid(
    references: dict[str, np.ndarray],
    mapped: dict[str, np.ndarray],
    path: str | os.PathLike,
    settings: PlotSettings,
    title: str,
    rows: int = 6,
) -> None:
    """FeatInv reconstructions of test images: original | manipulated | reconstruction of the
    original and of the true manipulated features | reconstruction of each mapping's features.

    Args:
        references: uint8 (N, R, R, 3) images by name (FEATINV_COLUMNS' names at least).
        mapped: Each mapping's reconstructions, uint8 (N, R, R, 3), in column order.
        path: The PNG to write.
        settings: Looks.
        title: The figure's title.
        rows: Test images drawn (at most N).
    """
    columns = [(references[name], label) for name, label in FEATINV_COLUMNS]
    columns += [(images, f"mapped: {mapping}") for mapping, images in mapped.items()]
    n = min(rows, len(references["original"]))
    side = 0.45 * settings.panel_size
    fig, axes = plt.subplots(
        n, len(columns), figsize=(side * len(columns), side * n + 0.5), squeeze=False
    )
    for column, (images, label) in enumerate(columns):
        axes[0, column].set_title(label, fontsize=6)
        for row in range(n):
            axes[row, column].imshow(images[row], interpolation="nearest")
            axes[row, column].set_axis_off()
    fig.suptitle(title, fontsize=8)
    save_figure(fig, path, settings)


def _inversion_bar_label(comparison: str) -> str:
    """`pooled_original_vs_reconstructed_original` -> `pooled original vs recon.`"""
    name, reference = comparison.split("_vs_")
    label = name.replace("reconstructed_", "recon. ").replace("_", " ")
    return label + (" vs recon." if reference.startswith("reconstructed_") else "")


def _inversion_bars(panel: pd.DataFrame, metric: str) -> list[tuple[str, str, float]]:
    """(label, colour key, mean over manipulations) of each bar of one FeatInv scores panel:
    the reconstructions of the true features and the controls (grey), then each mapping's."""
    rows = panel[panel.metric == metric]
    kinds = ("reconstructed_", "pooled_", "perturbed_")  # the floor and ceiling are lines
    references = rows[rows.mapping.isna() & rows.comparison.str.startswith(kinds)]
    means = references.groupby("comparison").value.mean()
    ranked = sorted(means.index, key=lambda c: ([c.startswith(k) for k in kinds].index(True), c))
    bars = [(_inversion_bar_label(c), "", means[c]) for c in ranked]
    mapped = rows[rows.comparison.str.startswith("mapped_vs_")]
    means = mapped.groupby(["mapping", "comparison"]).value.mean()
    for mapping in [m for m in MAPPING_ORDER if m in set(mapped.mapping)]:
        for comparison in ("mapped_vs_manipulated", "mapped_vs_reconstructed_manipulated"):
            if (mapping, comparison) in means.index:
                suffix = " vs recon." if "reconstructed" in comparison else ""
                bars.append((f"{mapping}{suffix}", mapping, means[(mapping, comparison)]))
    return bars


def plot_inversion_scores(
    table: pd.DataFrame, path: str | os.PathLike, settings: PlotSettings
) -> None:
    """FeatInv scores, one column per inverted (backbone, layer), the mean over manipulations.

    Top row: SSIM of the reconstructions of the true features, the controls and each mapping's
    features against the image they stand for (and, labelled "vs recon.", against the
    reconstruction of the true manipulated features); the dotted line is the mean train image.
    Bottom row: the classifier's top-1 agreement with the image the features came from; the
    dashed line is the originals' own at the model's resolution, the ceiling.
    """
    rows = select_rows(table, "inversion", stage="inversion")
    panels = panel_layers(rows)
    metric_names = ("ssim", "top1_agreement")
    fig, axes = plt.subplots(
        len(metric_names),
        len(panels),
        figsize=(1.6 * settings.panel_size * len(panels), settings.panel_size * 2),
        squeeze=False,
    )
    colours = colour_map(m for m in MAPPING_ORDER if m in set(rows.mapping.dropna()))
    for j, (backbone, layer) in enumerate(panels):
        panel = rows[(rows.backbone == backbone) & (rows.layer == layer)]
        for i, metric in enumerate(metric_names):
            ax, bars = axes[i, j], _inversion_bars(panel, metric)
            labels, keys, values = zip(*bars, strict=True) if bars else ((), (), ())
            ax.bar(
                range(len(bars)),
                values,
                color=[colours.get(key, "0.6") for key in keys],
                hatch=["//" if label.endswith("vs recon.") else "" for label in labels],
            )
            for comparison, style in (("mean_image", ":"), ("resized_original", "--")):
                line = panel[
                    (panel.comparison == f"{comparison}_vs_original") & (panel.metric == metric)
                ]
                if not line.empty:
                    ax.axhline(line.value.mean(), color="black", linestyle=style, linewidth=1)
            ax.set_xticks(range(len(bars)), labels, rotation=90, fontsize=6)
            ax.set_ylim(0, 1.02)
            ax.set_title(f"{backbone} · {layer}: {metric}", fontsize=8)
            ax.grid(axis="y", alpha=0.3)
    save_figure(fig, path, settings)
