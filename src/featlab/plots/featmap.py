"""FeatMap figures: how well each mapping fits by layer, relative to the best mapping, how
linear the manipulations are, and how many components a map needs."""

import os

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from featlab.plots.base import (
    CELL_SIZE,
    LABEL_SIZE,
    TICK_SIZE,
    TITLE_SIZE,
    PlotSettings,
    colour_map,
    figure_legend,
    layer_order,
    legend_handles,
    save_figure,
    select_rows,
)
from featlab.tables import MAPPINGS as MAPPING_ORDER


def _wrapped_grid(
    n: int, columns: int, panel: tuple[float, float], **subplots
) -> tuple[plt.Figure, list[plt.Axes]]:
    """A figure of n panels wrapped into rows of `columns`; the grid's spare slots are kept,
    switched off, at the end of the list (a legend may go there)."""
    columns = max(1, min(columns, n))
    rows = -(-n // columns)
    fig, axes = plt.subplots(
        rows,
        columns,
        figsize=(panel[0] * columns, panel[1] * rows),
        squeeze=False,
        layout="constrained",
        **subplots,
    )
    for ax in axes.flat[n:]:
        ax.axis("off")
    return fig, list(axes.flat)


def _layer_axis(rows: pd.DataFrame) -> tuple[dict[tuple[str, str], int], list[str], list[str]]:
    """x positions of every (backbone, layer), the backbones side by side in network order with a
    gap between them; the tick labels (layer names) and the backbone of each segment."""
    positions, labels, backbones = {}, [], sorted(rows.backbone.unique())
    for backbone in backbones:
        start = len(positions) + len(backbones[: backbones.index(backbone)])  # one gap each
        for i, layer in enumerate(layer_order(rows, backbone)):
            positions[(backbone, layer)] = start + i
            labels.append(layer)
    return positions, labels, backbones


def _label_layer_axis(
    ax: plt.Axes, positions: dict[tuple[str, str], int], labels: list[str], backbones: list[str]
) -> None:
    """Layer names as ticks, each backbone's name under its layers, dotted lines between them."""
    ax.set_xticks(sorted(positions.values()), labels, rotation=45, ha="right", fontsize=TICK_SIZE)
    centres, lefts = [], []
    for backbone in backbones:
        xs = [x for (b, _), x in positions.items() if b == backbone]
        centres.append((min(xs) + max(xs)) / 2)
        lefts.append(min(xs))
    ax.xaxis.remove_overlapping_locs = False  # a centre may fall on a layer's tick
    ax.set_xticks(centres, backbones, minor=True, fontsize=LABEL_SIZE, fontweight="bold")
    longest = max(len(label) for label in labels)
    ax.tick_params(axis="x", which="minor", length=0, pad=6 + 0.55 * TICK_SIZE * longest)
    for left in lefts[1:]:
        ax.axvline(left - 1, color="0.5", linestyle=":", linewidth=1)


COSINE_TICKS = (0.0, 0.5, 0.8, 0.9, 0.95, 0.98, 0.99, 0.995, 0.999)


def _cosine_scale(ax: plt.Axes, values: pd.Series) -> None:
    """A y axis even in -log(1 - cosine): 0.9, 0.99 and 0.999 equally far apart, so that mappings
    close to 1 part as far as their errors differ, while the baselines stay in view."""
    closest = 1 - 1e-6  # a cosine of 1 would lie at infinity

    def forward(c):
        return -np.log1p(-np.minimum(c, closest))

    def inverse(y):
        return -np.expm1(-y)

    # the panel's values with a margin of 5% of their span, in the scale's units
    low, high = forward(np.nanmin(values)), forward(np.nanmax(values))
    margin = 0.05 * max(high - low, 0.1)
    low, high = inverse(low - margin), inverse(high + margin)
    ax.set_yscale("function", functions=(forward, inverse))
    ax.set_ylim(low, high)
    ticks = [t for t in COSINE_TICKS if low <= t <= high]
    ax.set_yticks(ticks, [f"{t:g}" for t in ticks])
    ax.yaxis.set_minor_locator(matplotlib.ticker.NullLocator())


def plot_cosine_by_layer(
    table: pd.DataFrame, path: str | os.PathLike, settings: PlotSettings
) -> None:
    """One panel per manipulation: the metric by layer, every backbone's layers side by side, one
    line per mapping. Each panel's y axis spans its own values, for a cosine even in its error
    -log(1 - cosine), so that mappings close to 1 part."""
    rows = table[
        (table.stage == "mapping")
        & (table.metric == settings.metric)
        & (table.split == settings.split)
    ]
    if rows.empty:
        raise ValueError(
            f"the table has no {settings.split} {settings.metric} rows of stage mapping"
        )
    manipulations = sorted(rows.manipulation.unique())
    positions, labels, backbones = _layer_axis(rows)
    # about square, with one slot more for the legend
    columns = int(np.ceil(np.sqrt(len(manipulations) + 1)))
    width = max(2.4, 0.36 * (len(positions) + len(backbones)))  # inches per panel
    fig, axes = _wrapped_grid(len(manipulations), columns, (width, 0.9 * settings.panel_size + 1))
    colours = colour_map(m for m in MAPPING_ORDER if m in set(rows.mapping))
    for ax, manipulation in zip(axes, manipulations, strict=False):
        panel = rows[rows.manipulation == manipulation]
        for (backbone, mapping), line in panel.groupby(["backbone", "mapping"]):
            line = line.set_index("layer").reindex(layer_order(rows, backbone))
            xs = [positions[(backbone, layer)] for layer in line.index]
            ax.plot(xs, line.value, marker="o", markersize=4, color=colours[mapping])
        _label_layer_axis(ax, positions, labels, backbones)
        if settings.metric.startswith("cosine"):
            _cosine_scale(ax, panel.value)
        ax.tick_params(axis="y", labelsize=TICK_SIZE)
        ax.set_title(manipulation, fontsize=TITLE_SIZE)
        ax.grid(alpha=0.3)
    for ax in axes[:: min(columns, len(manipulations))]:
        ax.set_ylabel(f"{settings.split} {settings.metric}", fontsize=LABEL_SIZE)
    legend = axes[-1] if len(axes) > len(manipulations) else fig
    legend.legend(handles=legend_handles(colours), loc="center", fontsize=LABEL_SIZE, frameon=False)
    save_figure(fig, path, settings)


def _layer_grid(
    table: pd.DataFrame, panel: tuple[float, float], **subplots
) -> tuple[plt.Figure, np.ndarray, dict[tuple[str, str], plt.Axes]]:
    """A figure with one column per backbone and one row per layer depth (the i-th layer of each
    backbone in row i); slots of a backbone with fewer layers are switched off."""
    backbones = sorted(table.backbone.unique())
    layers = {backbone: layer_order(table, backbone) for backbone in backbones}
    depth = max(len(names) for names in layers.values())
    fig, axes = plt.subplots(
        depth,
        len(backbones),
        figsize=(panel[0] * len(backbones), panel[1] * depth),
        squeeze=False,
        layout="constrained",
        **subplots,
    )
    panels = {}
    for j, backbone in enumerate(backbones):
        for i in range(depth):
            if i < len(layers[backbone]):
                panels[(backbone, layers[backbone][i])] = axes[i, j]
            else:
                axes[i, j].axis("off")
    return fig, axes, panels


def _relative_grid(
    panel: pd.DataFrame, mappings: list[str], manipulations: list[str]
) -> np.ndarray:
    """Mappings by manipulations: each mapping's value over the best mapping's (NaN: not run)."""
    grid = panel.pivot_table(index="mapping", columns="manipulation", values="value")
    return (grid / grid.max()).reindex(index=mappings, columns=manipulations).to_numpy()


def _annotate_cells(ax: plt.Axes, grid: np.ndarray, image) -> None:
    """Each cell's value printed in it (dark text on light colours), `n/a` where it is missing."""
    for (i, j), value in np.ndenumerate(grid):
        if np.isnan(value):
            text, colour = "n/a", "0.35"
        else:
            red, green, blue, _ = image.cmap(image.norm(value))
            light = 0.299 * red + 0.587 * green + 0.114 * blue > 0.5
            text, colour = f"{value:.2f}", "black" if light else "white"
        ax.text(j, i, text, ha="center", va="center", fontsize=CELL_SIZE, color=colour)


def plot_relative_cosine(
    table: pd.DataFrame, path: str | os.PathLike, settings: PlotSettings
) -> None:
    """How far each mapping goes: its test cosine over the best mapping's, per layer and edit.

    One heatmap per (backbone, layer), backbones as columns and layers as rows: mappings (rows)
    by manipulations (columns), each cell's value printed; 1 marks the best mapping of that layer
    and manipulation, `n/a` a mapping that does not apply (the spatial baseline on a
    non-geometric edit) or was not run. The colour scale spans the figure's values, not 0 to 1,
    so that mappings a few hundredths apart differ in colour too.
    """
    rows = select_rows(
        table, "relative cosine", stage="mapping", metric=settings.metric, split=settings.split
    )
    rows = rows[rows.comparison.str.startswith("mapped_vs_manipulated")]
    mappings = [m for m in MAPPING_ORDER if m in set(rows.mapping)]
    manipulations = sorted(rows.manipulation.unique())
    cell = (0.36, 0.26)  # inches per cell
    panel = (cell[0] * len(manipulations) + 1.4, cell[1] * len(mappings) + 0.6)
    fig, axes, panels = _layer_grid(rows, panel)
    grids = {
        (b, layer): _relative_grid(
            rows[(rows.backbone == b) & (rows.layer == layer)], mappings, manipulations
        )
        for b, layer in panels
    }
    lowest = np.nanmin([np.nanmin(grid) for grid in grids.values()])
    norm = matplotlib.colors.Normalize(vmin=min(np.floor(lowest * 20) / 20, 0.95), vmax=1)
    cmap = plt.get_cmap("viridis").with_extremes(bad="0.9")
    for (backbone, layer), ax in panels.items():
        grid = grids[(backbone, layer)]
        image = ax.imshow(np.ma.masked_invalid(grid), norm=norm, cmap=cmap, aspect="auto")
        _annotate_cells(ax, grid, image)
        ax.set_xticks(range(len(manipulations)), manipulations, rotation=90, fontsize=TICK_SIZE)
        ax.set_yticks(range(len(mappings)), mappings, fontsize=TICK_SIZE)
        # manipulations under each backbone's deepest layer only, mappings left of the first column
        ax.tick_params(
            labelbottom=layer == layer_order(rows, backbone)[-1], labelleft=ax in axes[:, 0]
        )
        ax.set_title(f"{backbone} · {layer}", fontsize=TITLE_SIZE)
    colourbar = fig.colorbar(image, ax=axes, shrink=0.6, aspect=30)
    colourbar.set_label(f"{settings.split} {settings.metric} / best mapping's", fontsize=LABEL_SIZE)
    colourbar.ax.tick_params(labelsize=TICK_SIZE)
    save_figure(fig, path, settings)


def plot_linear_structure(
    table: pd.DataFrame, path: str | os.PathLike, settings: PlotSettings
) -> None:
    """Bias share and effective rank of the affine maps by layer: one panel per (metric,
    backbone), one line per mapping (median over manipulations, the band their range)."""
    metric_names = ("bias_share", "effective_rank")
    rows = select_rows(table, "linear structure", stage="analysis")
    rows = rows[rows.metric.isin(metric_names)]
    backbones = sorted(rows.backbone.unique())
    fig, axes = plt.subplots(
        len(metric_names),
        len(backbones),
        figsize=(settings.panel_size * 1.4 * len(backbones), settings.panel_size * 2),
        squeeze=False,
        layout="constrained",
    )
    colours = colour_map(m for m in MAPPING_ORDER if m in set(rows.mapping))
    for i, metric in enumerate(metric_names):
        for j, backbone in enumerate(backbones):
            ax, layers = axes[i, j], layer_order(rows, backbone)
            panel = rows[(rows.metric == metric) & (rows.backbone == backbone)]
            for mapping, lines in panel.groupby("mapping"):
                values = lines.groupby("layer").value.describe().reindex(layers)
                colour = colours[mapping]
                ax.plot(range(len(layers)), values["50%"], marker="o", color=colour)
                ax.fill_between(
                    range(len(layers)), values["min"], values["max"], color=colour, alpha=0.2
                )
            ax.set_xticks(range(len(layers)), layers, rotation=45, fontsize=TICK_SIZE)
            ax.set_title(f"{backbone} · {metric}", fontsize=TITLE_SIZE)
            ax.grid(alpha=0.3)
    figure_legend(fig, colours)
    save_figure(fig, path, settings)


def plot_rank_curves(table: pd.DataFrame, path: str | os.PathLike, settings: PlotSettings) -> None:
    """Test cosine of the ridge map cut to its leading k singular components, against k: one
    panel per (backbone, layer), backbones as columns and layers as rows, one line per
    manipulation."""
    rows = select_rows(
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
    size = (1.3 * settings.panel_size, settings.panel_size)
    fig, _, panels = _layer_grid(rows, size, sharex=True, sharey=True)
    colours = colour_map(sorted(rows.manipulation.unique()))
    for (backbone, layer), ax in panels.items():
        panel = rows[(rows.backbone == backbone) & (rows.layer == layer)]
        for manipulation, line in panel.groupby("manipulation"):
            line = line.sort_values("k")
            ax.plot(line.k, line.value, marker=".", color=colours[manipulation])
        ax.set_xscale("log", base=2)
        ax.tick_params(labelsize=TICK_SIZE, labelbottom=True, labelleft=True)
        ax.set_xlabel("k", fontsize=LABEL_SIZE)
        ax.set_title(f"{backbone} · {layer}", fontsize=TITLE_SIZE)
        ax.grid(alpha=0.3)
    fig.supylabel(
        f"{settings.split} cosine_median, {settings.rank_mapping} rank k", fontsize=LABEL_SIZE
    )
    figure_legend(fig, colours)
    save_figure(fig, path, settings)
