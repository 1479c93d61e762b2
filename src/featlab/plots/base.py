"""What every figure shares: its settings, text sizes, colours, legend, layer order and saving."""

import dataclasses
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from featlab.io import atomic_path


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


def colour_map(keys) -> dict[str, str]:
    """One colour per key, the same in every panel of a figure (tab10, then tab20)."""
    keys = list(dict.fromkeys(keys))
    cycle = plt.get_cmap("tab10" if len(keys) <= 10 else "tab20").colors
    return {key: cycle[i % len(cycle)] for i, key in enumerate(keys)}


def legend_handles(colours: dict[str, str]) -> list[plt.Line2D]:
    return [plt.Line2D([], [], color=c, marker="o", label=k) for k, c in colours.items()]


def figure_legend(fig: plt.Figure, colours: dict[str, str], fontsize: int = LABEL_SIZE) -> None:
    """One legend for the whole figure, right of the panels, naming every line of every panel."""
    fig.legend(
        handles=legend_handles(colours), loc="outside right upper", fontsize=fontsize, frameon=False
    )


def layer_order(table: pd.DataFrame, backbone: str) -> list[str]:
    """Layers of a backbone in network order (the order the table first lists them is not it)."""
    layers = table.loc[table.backbone == backbone, "layer"].dropna().unique().tolist()
    return sorted(
        layers,
        key=lambda name: [int(p) if p.isdigit() else p for p in name.replace(".", " ").split()],
    )


def save_figure(fig: plt.Figure, path: str | os.PathLike, settings: PlotSettings) -> None:
    if not fig.get_layout_engine():
        fig.tight_layout()
    with atomic_path(path) as temporary:
        fig.savefig(temporary, dpi=settings.dpi, format="png")
    plt.close(fig)


def select_rows(table: pd.DataFrame, what: str, **columns) -> pd.DataFrame:
    """The rows whose columns equal the given values; an error naming `what` when none do."""
    rows = table
    for column, value in columns.items():
        rows = rows[rows[column] == value]
    if rows.empty:
        raise ValueError(f"the table has no rows for the {what} figure ({columns})")
    return rows


def panel_layers(table: pd.DataFrame) -> list[tuple[str, str]]:
    """(backbone, layer) panels in backbone then network order."""
    return [(b, layer) for b in sorted(table.backbone.unique()) for layer in layer_order(table, b)]
