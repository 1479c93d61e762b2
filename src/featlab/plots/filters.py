"""Filter decoding figure: a layer's neurons as image-space filters."""

import os

import matplotlib.pyplot as plt
import numpy as np

from featlab.plots.base import (
    PlotSettings,
    save_figure,
)


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
    save_figure(fig, path, settings)
