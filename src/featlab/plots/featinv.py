"""FeatInv figures: reconstructions of test images, their scores by comparison, and FeatInv
against the optimisation inverter."""

import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from featlab.plots.base import (
    LABEL_SIZE,
    TICK_SIZE,
    PlotSettings,
    colour_map,
    layer_order,
    legend_handles,
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
# The inverters, by the prefix of their reconstructions' names (featinv.evaluate.OPTIMISED).
INVERTERS = (("", "FeatInv"), ("optimised_", "optimiser"))
GRID_WIDTH = 15.0  # inches at most: 1800 px at the default dpi


def plot_featinv_grid(
    references: dict[str, np.ndarray],
    mapped: dict[str, dict[str, np.ndarray]],
    path: str | os.PathLike,
    settings: PlotSettings,
    title: str,
    rows: int = 6,
) -> None:
    """Reconstructions of test images by each inverter, side by side: original | manipulated |
    FeatInv's then the optimiser's reconstruction of the original and of the true manipulated
    features | each mapping's features, FeatInv's then the optimiser's. An inverter that did not
    invert the cell has no columns.

    Args:
        references: uint8 (N, R, R, 3) images by name: `original`, `manipulated` and each
            inverter's reconstructions of the true features (`reconstructed_original`,
            `optimised_reconstructed_original`, ...).
        mapped: Each mapping's reconstructions by name (`mapped`, `optimised_mapped`), in
            column order.
        path: The PNG to write.
        settings: Looks.
        title: The figure's title.
        rows: Test images drawn (at most N).
    """
    columns = [(references[name], label) for name, label in FEATINV_COLUMNS[:2]]
    for name, label in FEATINV_COLUMNS[2:]:
        columns += [
            (references[prefix + name], f"{label}\n{inverter}")
            for prefix, inverter in INVERTERS
            if prefix + name in references
        ]
    for mapping, images in mapped.items():
        columns += [
            (images[prefix + "mapped"], f"mapped: {mapping}\n{inverter}")
            for prefix, inverter in INVERTERS
            if prefix + "mapped" in images
        ]
    n = min(rows, *(len(images) for images, _ in columns))  # the inverters may differ
    side = min(0.45 * settings.panel_size, GRID_WIDTH / len(columns))
    fig, axes = plt.subplots(
        n, len(columns), figsize=(side * len(columns), side * n + 0.6), squeeze=False
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
    featinv = rows[rows.comparison.str.startswith("reconstructed_")]  # not the optimiser's
    inverted = set(zip(featinv.backbone, featinv.layer, strict=True))
    panels = [panel for panel in panel_layers(rows) if panel in inverted]
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


def plot_inverters(table: pd.DataFrame, path: str | os.PathLike, settings: PlotSettings) -> None:
    """FeatInv against the optimiser by layer: one row per backbone, one column per score.

    Bars: each inverter's reconstructions of the original features (plain) and of the mapped
    features (hatched), the mean over the manipulations (and mappings) that both inverters
    scored on the layer (`shared_cells`). Per layer, the dotted segment
    is the mean train image (the floor) and the dashed one the originals at the reconstructions'
    resolution (the ceiling), where the score has one.
    """
    rows = shared_cells(select_rows(table, "inverters", stage="inversion"))
    backbones = sorted(rows.backbone.unique())
    scores = (
        ("ssim", "original"),
        ("cosine_median", "conditioning"),
        ("top1_agreement", "original"),
    )
    fig, axes = plt.subplots(
        len(backbones),
        len(scores),
        figsize=(1.4 * settings.panel_size * len(scores), settings.panel_size * len(backbones)),
        squeeze=False,
        layout="constrained",
    )
    colours = colour_map(label for _, label in INVERTERS)
    for i, backbone in enumerate(backbones):
        layers = layer_order(rows, backbone)
        for j, (metric, reference) in enumerate(scores):
            ax = axes[i, j]
            panel = rows[(rows.backbone == backbone) & (rows.metric == metric)]
            means = panel.groupby(["layer", "comparison"]).value.mean()
            _inverter_bars(ax, means, layers, reference, colours)
            for name, style in (("mean_image", ":"), ("resized_original", "--")):
                for x, layer in enumerate(layers):
                    if (layer, f"{name}_vs_{reference}") in means.index:
                        value = means[(layer, f"{name}_vs_{reference}")]
                        ax.hlines(value, x - 0.45, x + 0.45, color="black", linestyle=style)
            ax.set_xticks(range(len(layers)), layers, fontsize=TICK_SIZE)
            ax.set_xlim(-0.5, len(layers) - 0.5)
            ax.set_ylim(0, 1.02)
            ax.set_title(f"{backbone} · {metric} vs {reference}", fontsize=LABEL_SIZE)
            ax.grid(axis="y", alpha=0.3)
    handles = [
        *legend_handles(colours),
        plt.Rectangle((0, 0), 1, 1, fill=False, hatch="//", label="mapped features"),
        plt.Line2D([], [], color="black", linestyle=":", label="mean image (floor)"),
        plt.Line2D([], [], color="black", linestyle="--", label="resized original (ceiling)"),
    ]
    fig.legend(handles=handles, loc="outside right upper", fontsize=TICK_SIZE, frameon=False)
    save_figure(fig, path, settings)


def inverter_of(comparison: str) -> str | None:
    """Which inverter made an inversion row's reconstruction (None: a floor, ceiling or other
    reference that no inverter made)."""
    if comparison.startswith(INVERTERS[1][0]):
        return INVERTERS[1][1]
    if comparison.startswith(("reconstructed_", "mapped_")):
        return INVERTERS[0][1]
    return None


def shared_cells(rows: pd.DataFrame) -> pd.DataFrame:
    """Inversion rows of the (manipulation, mapping) cells that both inverters scored, on each
    layer that both reached, so that a layer's bars average both over the same cells (the
    optimiser inverts a subset: `featinv.optimise`); a layer that one inverter alone reached, or
    where they share no cell, keeps its rows."""
    keep = pd.Series(True, index=rows.index)
    inverters = rows.comparison.map(inverter_of)
    for _, group in rows.groupby(["backbone", "layer"]):
        # the workflow reads an empty mapping (the original's reconstructions) as NaN
        cells = pd.MultiIndex.from_frame(group[["manipulation", "mapping"]].fillna(""))
        made = [set(cells[(inverters[group.index] == name).to_numpy()]) for _, name in INVERTERS]
        shared = set.intersection(*made)
        if shared:
            keep[group.index] = cells.isin(list(shared))
    return rows[keep]


def _inverter_bars(
    ax: plt.Axes, means: pd.Series, layers: list, reference: str, colours: dict
) -> None:
    """Four bars per layer: FeatInv and the optimiser on the original and the mapped features."""
    mapped_reference = "manipulated" if reference == "original" else reference
    kinds = (("reconstructed_original", reference, ""), ("mapped", mapped_reference, "//"))
    for k, (prefix, inverter) in enumerate(INVERTERS):
        for h, (name, against, hatch) in enumerate(kinds):
            comparison = f"{prefix}{name}_vs_{against}"
            x = [i for i, layer in enumerate(layers) if (layer, comparison) in means.index]
            values = [means[(layers[i], comparison)] for i in x]
            offset = (2 * h + k - 1.5) * 0.2
            ax.bar(
                np.array(x) + offset,
                values,
                width=0.2,
                color=colours[inverter],
                hatch=hatch,
                edgecolor="white" if hatch else None,
            )
