"""Figures of the study, drawn from the metrics table alone."""

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
    fig.tight_layout()
    with atomic_path(path) as temporary:
        fig.savefig(temporary, dpi=settings.dpi, format="png")
    plt.close(fig)
