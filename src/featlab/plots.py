"""Figures of the study, drawn from the metrics table alone."""

import dataclasses
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
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
    )
    for i, backbone in enumerate(backbones):
        layers = _layer_order(rows, backbone)
        for j, manipulation in enumerate(manipulations):
            ax = axes[i, j]
            panel = rows[(rows.backbone == backbone) & (rows.manipulation == manipulation)]
            for mapping, line in panel.groupby("mapping"):
                line = line.set_index("layer").reindex(layers)
                ax.plot(range(len(layers)), line.value, marker="o", label=mapping)
            ax.set_xticks(range(len(layers)), layers, rotation=45, fontsize=7)
            ax.set_title(f"{backbone} · {manipulation}", fontsize=8)
            ax.grid(alpha=0.3)
        axes[i, 0].set_ylabel(f"{settings.split} {settings.metric}")
    axes[0, -1].legend(fontsize=7)
    _save(fig, path, settings)


def _save(fig: plt.Figure, path: str | os.PathLike, settings: PlotSettings) -> None:
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
    )
    for i, metric in enumerate(metric_names):
        for j, backbone in enumerate(backbones):
            ax, layers = axes[i, j], _layer_order(rows, backbone)
            panel = rows[(rows.metric == metric) & (rows.backbone == backbone)]
            for mapping, lines in panel.groupby("mapping"):
                values = lines.groupby("layer").value.describe().reindex(layers)
                ax.plot(range(len(layers)), values["50%"], marker="o", label=mapping)
                ax.fill_between(range(len(layers)), values["min"], values["max"], alpha=0.2)
            ax.set_xticks(range(len(layers)), layers, rotation=45, fontsize=7)
            ax.set_title(f"{backbone} · {metric}", fontsize=8)
            ax.grid(alpha=0.3)
    axes[0, -1].legend(fontsize=7)
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
    rows = rows[rows.comparison.str.fullmatch(r"rank_\d+")].copy()
    rows["k"] = rows.comparison.str.removeprefix("rank_").astype(int)
    panels = _panel_layers(rows)
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(settings.panel_size * len(panels), settings.panel_size * 1.2),
        sharey=True,
        squeeze=False,
    )
    for ax, (backbone, layer) in zip(axes[0], panels, strict=True):
        panel = rows[(rows.backbone == backbone) & (rows.layer == layer)]
        for manipulation, line in panel.groupby("manipulation"):
            line = line.sort_values("k")
            ax.plot(line.k, line.value, marker=".", label=manipulation)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("k", fontsize=7)
        ax.set_title(f"{backbone} · {layer}", fontsize=8)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel(f"{settings.split} cosine_median, {settings.rank_mapping} rank k")
    axes[0, -1].legend(fontsize=6)
    _save(fig, path, settings)
