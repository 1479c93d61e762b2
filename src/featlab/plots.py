"""Figures of the study, drawn from the metrics table and stored artifacts alone."""

import dataclasses
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from featlab.io import atomic_path
from featlab.tables import MAPPINGS as MAPPING_ORDER


@dataclasses.dataclass(frozen=True)
class PlotSettings:
    """Looks of the figures; changing them reruns only plotting."""

    dpi: int = 120
    panel_size: float = 2.4  # inches per panel side
    metric: str = "cosine_median"  # which mapping metric the cosine figure shows
    split: str = "test"
    rank_mapping: str = "ridge"  # the affine map whose rank-k curves are drawn


def _colours(keys) -> dict[str, str]:
    """One colour per key, the same in every panel of a figure (tab10, then tab20)."""
    keys = list(dict.fromkeys(keys))
    cycle = plt.get_cmap("tab10" if len(keys) <= 10 else "tab20").colors
    return {key: cycle[i % len(cycle)] for i, key in enumerate(keys)}


def _legend(fig: plt.Figure, colours: dict[str, str], fontsize: int = 7) -> None:
    """One legend for the whole figure, right of the panels, naming every line of every panel."""
    handles = [plt.Line2D([], [], color=c, marker="o", label=k) for k, c in colours.items()]
    fig.legend(handles=handles, loc="outside right upper", fontsize=fontsize, frameon=False)


def _layer_order(table: pd.DataFrame, backbone: str) -> list[str]:
    """Layers of a backbone in network order (the order the table first lists them is not it)."""
    layers = table.loc[table.backbone == backbone, "layer"].dropna().unique().tolist()
    return sorted(
        layers,
        key=lambda name: [int(p) if p.isdigit() else p for p in name.replace(".", " ").split()],
    )


def plot_cosine_by_layer(
    table: pd.DataFrame, path: str | os.PathLike, settings: PlotSettings
) -> None:
    """One panel per (backbone, manipulation): the metric by layer, one line per mapping."""
    rows = table[
        (table.stage == "mapping")
        & (table.metric == settings.metric)
        & (table.split == settings.split)
    ]
    if rows.empty:
        raise ValueError(
            f"the table has no {settings.split} {settings.metric} rows of stage mapping"
        )
    backbones, manipulations = sorted(rows.backbone.unique()), sorted(rows.manipulation.unique())
    fig, axes = plt.subplots(
        len(backbones),
        len(manipulations),
        figsize=(settings.panel_size * len(manipulations), settings.panel_size * len(backbones)),
        sharey=True,
        squeeze=False,
        layout="constrained",
    )
    colours = _colours(m for m in MAPPING_ORDER if m in set(rows.mapping))
    for i, backbone in enumerate(backbones):
        layers = _layer_order(rows, backbone)
        for j, manipulation in enumerate(manipulations):
            ax = axes[i, j]
            panel = rows[(rows.backbone == backbone) & (rows.manipulation == manipulation)]
            for mapping, line in panel.groupby("mapping"):
                line = line.set_index("layer").reindex(layers)
                ax.plot(range(len(layers)), line.value, marker="o", color=colours[mapping])
            ax.set_xticks(range(len(layers)), layers, rotation=45, fontsize=7)
            ax.set_title(f"{backbone} · {manipulation}", fontsize=8)
            ax.grid(alpha=0.3)
        axes[i, 0].set_ylabel(f"{settings.split} {settings.metric}")
    _legend(fig, colours)
    _save(fig, path, settings)


def _save(fig: plt.Figure, path: str | os.PathLike, settings: PlotSettings) -> None:
    if not fig.get_layout_engine():
        fig.tight_layout()
    with atomic_path(path) as temporary:
        fig.savefig(temporary, dpi=settings.dpi, format="png")
    plt.close(fig)


def _select(table: pd.DataFrame, what: str, **columns) -> pd.DataFrame:
    """The rows whose columns equal the given values; an error naming `what` when none do."""
    rows = table
    for column, value in columns.items():
        rows = rows[rows[column] == value]
    if rows.empty:
        raise ValueError(f"the table has no rows for the {what} figure ({columns})")
    return rows


def _panel_layers(table: pd.DataFrame) -> list[tuple[str, str]]:
    """(backbone, layer) panels in backbone then network order."""
    return [(b, layer) for b in sorted(table.backbone.unique()) for layer in _layer_order(table, b)]


def plot_relative_cosine(
    table: pd.DataFrame, path: str | os.PathLike, settings: PlotSettings
) -> None:
    """How far each mapping goes: its test cosine over the best mapping's, per layer and edit.

    One heatmap per (backbone, layer): mappings (rows) by manipulations (columns); 1 marks the
    best mapping of that layer and manipulation.
    """
    rows = _select(
        table, "relative cosine", stage="mapping", metric=settings.metric, split=settings.split
    )
    rows = rows[rows.comparison.str.startswith("mapped_vs_manipulated")]
    panels = _panel_layers(rows)
    mappings = [m for m in MAPPING_ORDER if m in set(rows.mapping)]
    manipulations = sorted(rows.manipulation.unique())
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(0.35 * len(manipulations) * len(panels) + 2, 0.3 * len(mappings) + 2),
        squeeze=False,
    )
    for ax, (backbone, layer) in zip(axes[0], panels, strict=True):
        panel = rows[(rows.backbone == backbone) & (rows.layer == layer)]
        grid = panel.pivot_table(index="mapping", columns="manipulation", values="value")
        grid = (grid / grid.max()).reindex(index=mappings, columns=manipulations)
        image = ax.imshow(grid.to_numpy(), vmin=0, vmax=1, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(manipulations)), manipulations, rotation=90, fontsize=7)
        ax.set_yticks(range(len(mappings)), mappings, fontsize=7)
        ax.set_title(f"{backbone} · {layer}", fontsize=8)
    fig.colorbar(image, ax=axes[0, -1], label=f"{settings.metric} / best")
    _save(fig, path, settings)


def plot_linear_structure(
    table: pd.DataFrame, path: str | os.PathLike, settings: PlotSettings
) -> None:
    """Bias share and effective rank of the affine maps by layer: one panel per (metric,
    backbone), one line per mapping (median over manipulations, the band their range)."""
    metric_names = ("bias_share", "effective_rank")
    rows = _select(table, "linear structure", stage="analysis")
    rows = rows[rows.metric.isin(metric_names)]
    backbones = sorted(rows.backbone.unique())
    fig, axes = plt.subplots(
        len(metric_names),
        len(backbones),
        figsize=(settings.panel_size * 1.4 * len(backbones), settings.panel_size * 2),
        squeeze=False,
        layout="constrained",
    )
    colours = _colours(m for m in MAPPING_ORDER if m in set(rows.mapping))
    for i, metric in enumerate(metric_names):
        for j, backbone in enumerate(backbones):
            ax, layers = axes[i, j], _layer_order(rows, backbone)
            panel = rows[(rows.metric == metric) & (rows.backbone == backbone)]
            for mapping, lines in panel.groupby("mapping"):
                values = lines.groupby("layer").value.describe().reindex(layers)
                colour = colours[mapping]
                ax.plot(range(len(layers)), values["50%"], marker="o", color=colour)
                ax.fill_between(
                    range(len(layers)), values["min"], values["max"], color=colour, alpha=0.2
                )
            ax.set_xticks(range(len(layers)), layers, rotation=45, fontsize=7)
            ax.set_title(f"{backbone} · {metric}", fontsize=8)
            ax.grid(alpha=0.3)
    _legend(fig, colours)
    _save(fig, path, settings)


def plot_rank_curves(table: pd.DataFrame, path: str | os.PathLike, settings: PlotSettings) -> None:
    """Test cosine of the ridge map cut to its leading k singular components, against k: one
    panel per (backbone, layer), one line per manipulation."""
    rows = _select(
        table,
        "rank-k",
        stage="analysis",
        metric="cosine_median",
        mapping=settings.rank_mapping,
        split=settings.split,
    )
    found = rows.comparison.str.extract(r"^(?:standardised|raw)_rank_(\d+)$")[0]
    rows = rows.assign(k=found).dropna(subset=["k"])
    rows["k"] = rows.k.astype(int)
    panels = _panel_layers(rows)
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(settings.panel_size * len(panels), settings.panel_size * 1.2),
        sharey=True,
        squeeze=False,
        layout="constrained",
    )
    colours = _colours(sorted(rows.manipulation.unique()))
    for ax, (backbone, layer) in zip(axes[0], panels, strict=True):
        panel = rows[(rows.backbone == backbone) & (rows.layer == layer)]
        for manipulation, line in panel.groupby("manipulation"):
            line = line.sort_values("k")
            ax.plot(line.k, line.value, marker=".", color=colours[manipulation])
        ax.set_xscale("log", base=2)
        ax.set_xlabel("k", fontsize=7)
        ax.set_title(f"{backbone} · {layer}", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel(f"{settings.split} cosine_median, {settings.rank_mapping} rank k")
    _legend(fig, colours, fontsize=6)
    _save(fig, path, settings)


def plot_filter_grid(
    filters: dict[str, np.ndarray],
    channels: np.ndarray,
    fidelity: dict[str, np.ndarray],
    path: str | os.PathLike,
    settings: PlotSettings,
    title: str,
) -> None:
    """A layer's decoded filters: per neuron, one row per method (e.g. substitution above
    deconvolution), titled with the channel and the filter's fidelity r; 8 neurons per row.

    Each filter (3, R_h, R_w) is drawn on its own symmetric scale: grey is 0, full colour its
    largest magnitude.
    """
    methods, columns = list(filters), min(8, len(channels))
    blocks = -(-len(channels) // columns)
    fig, axes = plt.subplots(
        blocks * len(methods),
        columns,
        figsize=(0.55 * settings.panel_size * columns, 0.6 * settings.panel_size * blocks * 2),
        squeeze=False,
    )
    filled = len(channels) - (blocks - 1) * columns  # neurons in the last block
    for ax in axes[-len(methods) :, filled:].flat:
        ax.axis("off")
    for k, channel in enumerate(channels):
        block, column = divmod(k, columns)
        for m, method in enumerate(methods):
            kernel = filters[method][k]
            # (3, R_h, R_w) -> (R_h, R_w, 3) in [0, 1], grey at 0
            scale = max(float(np.abs(kernel).max()), np.finfo(np.float32).tiny)
            ax = axes[block * len(methods) + m, column]
            ax.imshow(np.clip(0.5 + 0.5 * kernel.transpose(1, 2, 0) / scale, 0, 1))
            ax.set_title(f"ch {channel} · r={fidelity[method][k]:.2f}", fontsize=6)
            ax.set_xticks([])
            ax.set_yticks([])
            if column == 0:
                ax.set_ylabel(method, fontsize=6)
    fig.suptitle(title, fontsize=8)
    _save(fig, path, settings)


LENS_METRICS = ("target_probability", "transfer_probability", "warp_share", "warp_gain_share")


def plot_lens_summary(table: pd.DataFrame, path: str | os.PathLike, settings: PlotSettings) -> None:
    """The steerable lens by L2 budget: one panel per (driving backbone, metric), one line per
    method (colour) and variant (solid: iterative, dashed: one_step), the median over cases; the
    grey dotted line is the source images' median."""
    rows = _select(table, "lens", stage="lens")
    rows = rows[rows.metric.isin(LENS_METRICS)]
    parts = rows.comparison.str.extract(r"^(.+)_(one_step|iterative)_l2_([0-9.e+-]+)$")
    rows = rows.assign(method=parts[0], variant=parts[1], budget=parts[2].astype(float))
    metric_names = [m for m in LENS_METRICS if m in set(rows.metric)]
    backbones, methods = sorted(rows.backbone.unique()), list(dict.fromkeys(rows.method.dropna()))
    fig, axes = plt.subplots(
        len(backbones),
        len(metric_names),
        figsize=(settings.panel_size * len(metric_names), settings.panel_size * len(backbones)),
        sharey=True,
        squeeze=False,
    )
    colours = _colours(methods)
    for i, backbone in enumerate(backbones):
        for j, metric in enumerate(metric_names):
            ax = axes[i, j]
            panel = rows[(rows.backbone == backbone) & (rows.metric == metric)]
            source = panel[panel.comparison == "source"].value
            if not source.empty:
                ax.axhline(source.median(), color="grey", linestyle=":", linewidth=1)
            morphs = panel.dropna(subset=["method"])
            for (method, variant), line in morphs.groupby(["method", "variant"], sort=False):
                medians = line.groupby("budget").value.median()
                style = "-" if variant == "iterative" else "--"
                ax.plot(
                    medians.index,
                    medians,
                    style,
                    marker="o",
                    color=colours[method],
                    label=f"{method} {variant}",
                )
            ax.set_xticks(sorted(morphs.budget.unique()))
            ax.set_xlabel("L2 budget", fontsize=7)
            ax.set_title(f"{backbone} · {metric}", fontsize=8)
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
    axes[0, -1].legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.02, 1))
    _save(fig, path, settings)


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
    _save(fig, path, settings)


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
    rows = _select(table, "inversion", stage="inversion")
    panels = _panel_layers(rows)
    metric_names = ("ssim", "top1_agreement")
    fig, axes = plt.subplots(
        len(metric_names),
        len(panels),
        figsize=(1.6 * settings.panel_size * len(panels), settings.panel_size * 2),
        squeeze=False,
    )
    colours = _colours(m for m in MAPPING_ORDER if m in set(rows.mapping.dropna()))
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
    _save(fig, path, settings)
