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


# Text sizes in points: legible when a figure of at most 2000 px (at the default dpi) is shown
# 800 px wide.
TITLE_SIZE, LABEL_SIZE, TICK_SIZE, CELL_SIZE = 10, 9, 8, 7


def _colours(keys) -> dict[str, str]:
    """One colour per key, the same in every panel of a figure (tab10, then tab20)."""
    keys = list(dict.fromkeys(keys))
    cycle = plt.get_cmap("tab10" if len(keys) <= 10 else "tab20").colors
    return {key: cycle[i % len(cycle)] for i, key in enumerate(keys)}


def _handles(colours: dict[str, str]) -> list[plt.Line2D]:
    return [plt.Line2D([], [], color=c, marker="o", label=k) for k, c in colours.items()]


def _legend(fig: plt.Figure, colours: dict[str, str], fontsize: int = LABEL_SIZE) -> None:
    """One legend for the whole figure, right of the panels, naming every line of every panel."""
    fig.legend(
        handles=_handles(colours), loc="outside right upper", fontsize=fontsize, frameon=False
    )


def _layer_order(table: pd.DataFrame, backbone: str) -> list[str]:
    """Layers of a backbone in network order (the order the table first lists them is not it)."""
    layers = table.loc[table.backbone == backbone, "layer"].dropna().unique().tolist()
    return sorted(
        layers,
        key=lambda name: [int(p) if p.isdigit() else p for p in name.replace(".", " ").split()],
    )


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
        for i, layer in enumerate(_layer_order(rows, backbone)):
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
    colours = _colours(m for m in MAPPING_ORDER if m in set(rows.mapping))
    for ax, manipulation in zip(axes, manipulations, strict=False):
        panel = rows[rows.manipulation == manipulation]
        for (backbone, mapping), line in panel.groupby(["backbone", "mapping"]):
            line = line.set_index("layer").reindex(_layer_order(rows, backbone))
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
    legend.legend(handles=_handles(colours), loc="center", fontsize=LABEL_SIZE, frameon=False)
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


def _layer_grid(
    table: pd.DataFrame, panel: tuple[float, float], **subplots
) -> tuple[plt.Figure, np.ndarray, dict[tuple[str, str], plt.Axes]]:
    """A figure with one column per backbone and one row per layer depth (the i-th layer of each
    backbone in row i); slots of a backbone with fewer layers are switched off."""
    backbones = sorted(table.backbone.unique())
    layers = {backbone: _layer_order(table, backbone) for backbone in backbones}
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
    rows = _select(
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
            labelbottom=layer == _layer_order(rows, backbone)[-1], labelleft=ax in axes[:, 0]
        )
        ax.set_title(f"{backbone} · {layer}", fontsize=TITLE_SIZE)
    colourbar = fig.colorbar(image, ax=axes, shrink=0.6, aspect=30)
    colourbar.set_label(f"{settings.split} {settings.metric} / best mapping's", fontsize=LABEL_SIZE)
    colourbar.ax.tick_params(labelsize=TICK_SIZE)
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
            ax.set_xticks(range(len(layers)), layers, rotation=45, fontsize=TICK_SIZE)
            ax.set_title(f"{backbone} · {metric}", fontsize=TITLE_SIZE)
            ax.grid(alpha=0.3)
    _legend(fig, colours)
    _save(fig, path, settings)


def plot_rank_curves(table: pd.DataFrame, path: str | os.PathLike, settings: PlotSettings) -> None:
    """Test cosine of the ridge map cut to its leading k singular components, against k: one
    panel per (backbone, layer), backbones as columns and layers as rows, one line per
    manipulation."""
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
    size = (1.3 * settings.panel_size, settings.panel_size)
    fig, _, panels = _layer_grid(rows, size, sharex=True, sharey=True)
    colours = _colours(sorted(rows.manipulation.unique()))
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
    _legend(fig, colours)
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
    n = min(rows, len(references["original"]))
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
    featinv = rows[rows.comparison.str.startswith("reconstructed_")]  # not the optimiser's
    inverted = set(zip(featinv.backbone, featinv.layer, strict=True))
    panels = [panel for panel in _panel_layers(rows) if panel in inverted]
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


def plot_inverters(table: pd.DataFrame, path: str | os.PathLike, settings: PlotSettings) -> None:
    """FeatInv against the optimiser by layer: one row per backbone, one column per score.

    Bars: each inverter's reconstructions of the original features (plain) and of the mapped
    features (hatched), the mean over manipulations (and mappings). Per layer, the dotted segment
    is the mean train image (the floor) and the dashed one the originals at the reconstructions'
    resolution (the ceiling), where the score has one.
    """
    rows = _select(table, "inverters", stage="inversion")
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
    colours = _colours(label for _, label in INVERTERS)
    for i, backbone in enumerate(backbones):
        layers = _layer_order(rows, backbone)
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
        *_handles(colours),
        plt.Rectangle((0, 0), 1, 1, fill=False, hatch="//", label="mapped features"),
        plt.Line2D([], [], color="black", linestyle=":", label="mean image (floor)"),
        plt.Line2D([], [], color="black", linestyle="--", label="resized original (ceiling)"),
    ]
    fig.legend(handles=handles, loc="outside right upper", fontsize=TICK_SIZE, frameon=False)
    _save(fig, path, settings)


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
