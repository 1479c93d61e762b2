"""Figures of learned feature-space edits: reconstructions and probabilities along alpha, and the
two lenses side by side."""

import os
import re

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from featlab.plots.base import (
    LABEL_SIZE,
    TICK_SIZE,
    TITLE_SIZE,
    PlotSettings,
    colour_map,
    save_figure,
)

REFERENCE_COLUMNS = (
    ("original", "original"),
    ("manipulated", "manip."),  # short: the strip's columns are one image wide
    ("reconstructed_manipulated", "recon. manip."),
)


def _alpha(name: str) -> float | None:
    """alpha of an `extrapolated_x{alpha}` or `perturbed_x{alpha}` name, else None."""
    found = re.fullmatch(
        r"(?:reconstructed_)?(?:extrapolated|perturbed|feature_lens)_x(-?[\d.e+-]+)", name
    )
    return float(found.group(1)) if found else None


def strip_columns(images: dict[str, np.ndarray]) -> tuple[list[str], list[str], list[str]]:
    """The mappings of a cell's images, and its extrapolation and truncation names in order."""
    mappings = list(dict.fromkeys(name.split("/")[0] for name in images if "/" in name))
    names = [name.split("/", 1)[1] for name in images if name.startswith(f"{mappings[0]}/")]
    alphas = sorted((n for n in names if n.startswith("extrapolated_x")), key=_alpha)
    ranks = sorted(
        (n for n in names if n.startswith("truncated_k")), key=lambda n: int(n.split("_k")[1])
    )
    return mappings, alphas, ranks


def plot_edit_strip(
    images: dict[str, np.ndarray], path: str | os.PathLike, settings: PlotSettings, title: str
) -> None:
    """Reconstructions of one cell's edits: alpha across (then the rank-k truncations at alpha 1),
    test images down; under each image's mappings, the feature-space gradient lens and the noise,
    each at the norm of the first mapping's edit at that alpha.

    Args:
        images: uint8 (N, R, R, 3) images by name, as `edits.readings.edit_cell` saves them.
        path: The PNG to write.
        settings: Looks.
        title: The figure's title.
    """
    mappings, alphas, ranks = strip_columns(images)
    n = len(images["original"])
    lenses = [line for line in ("lens", "control") if any(_kind(line) in name for name in images)]
    lines = [(i, m) for i in range(n) for m in [*mappings, *lenses]]
    columns = [*REFERENCE_COLUMNS, *((a, f"α = {_alpha(a):g}") for a in alphas)]
    columns += [(k, f"rank {k.split('_k')[1]}") for k in ranks]
    # at most 100 px an image at the default dpi, and at most 16 inches of rows: a page
    side = min(0.35 * settings.panel_size, 16 / len(lines))
    fig, axes = plt.subplots(
        len(lines),
        len(columns),
        figsize=(side * len(columns) + 0.8, side * len(lines) + 0.6),
        squeeze=False,
    )
    for row, (image, line) in enumerate(lines):
        for column, (name, label) in enumerate(columns):
            ax = _image_panel(axes[row, column], label if row == 0 else None)
            if column == 0:
                label = {"control": "noise", "lens": "grad. lens"}.get(line, f"{image}: {line}")
                ax.set_ylabel(label, fontsize=TICK_SIZE)
            shown = _strip_image(images, image, line, name, mappings[0])
            if shown is not None:
                ax.imshow(shown, interpolation="nearest")
    fig.suptitle(title, fontsize=TITLE_SIZE)
    save_figure(fig, path, settings)


def _image_panel(ax: plt.Axes, title: str | None) -> plt.Axes:
    """An axis for one image: no ticks or frame, the column's title on the top row."""
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if title is not None:
        ax.set_title(title, fontsize=TICK_SIZE)
    return ax


def _strip_image(images: dict, index: int, line: str, name: str, first: str):
    """The image of one strip cell, or None where it stays blank."""
    if any(name == reference for reference, _ in REFERENCE_COLUMNS):
        first_line = line == first
        return images[name][index] if first_line and name in images else None
    if line in ("control", "lens"):
        key = f"{first}/{name.replace('extrapolated_x', _kind(line))}"
        return images[key][index] if name.startswith("extrapolated_x") and key in images else None
    return images[f"{line}/{name}"][index]


def _kind(line: str) -> str:
    """The name prefix of a strip's control or lens row."""
    return {"control": "perturbed_x", "lens": "feature_lens_x"}[line]


def plot_edit_probability(
    table: pd.DataFrame, path: str | os.PathLike, settings: PlotSettings
) -> None:
    """The target class's probability against alpha, a panel per (backbone, layer,
    manipulation): each mapping's extrapolated features (solid), their FeatInv reconstructions
    (dotted), the norm-matched noise (dashed) and the gradient lens (dash-dots); the original
    and manipulated images as levels."""
    rows = table[(table.stage == "edits") & (table.metric == "target_probability")]
    cells = list(dict.fromkeys(zip(rows.backbone, rows.layer, rows.manipulation, strict=True)))
    columns = max(1, min(3, len(cells)))
    shape = (-(-max(len(cells), 1) // columns), columns)
    size = settings.panel_size
    fig, axes = plt.subplots(
        *shape,
        figsize=(1.3 * size * shape[1] + 1.6, size * shape[0]),
        squeeze=False,
        layout="constrained",
    )
    colours = colour_map(rows.mapping.dropna())  # the images themselves have none
    for ax, cell in zip(axes.flat, cells, strict=False):
        _probability_panel(ax, rows, cell, colours)
    for ax in axes.flat[len(cells) :]:
        ax.axis("off")
    if not cells:
        axes[0, 0].text(0.5, 0.5, "no target probabilities\n(head of other classes)", ha="center")
    handles = [plt.Line2D([], [], color=c, label=m) for m, c in colours.items()]
    handles += [
        plt.Line2D([], [], color="grey", linestyle=s, label=label)
        for s, label in (
            ("-", "features"),
            (":", "FeatInv recon."),
            ("--", "noise control"),
            ((0, (3, 1, 1, 1, 1, 1)), "gradient lens"),
        )
    ]
    for style, label in (("-.", "manipulated image"), ((0, (1, 3)), "original image")):
        handles.append(plt.Line2D([], [], color="black", linestyle=style, label=label))
    fig.legend(handles=handles, loc="outside right upper", fontsize=LABEL_SIZE, frameon=False)
    save_figure(fig, path, settings)


def _probability_panel(ax: plt.Axes, rows: pd.DataFrame, cell: tuple, colours: dict) -> None:
    backbone, layer, manipulation = cell
    here = rows[(rows.backbone == backbone) & (rows.layer == layer)]
    here = here[here.manipulation == manipulation]
    for mapping, colour in colours.items():
        mine = here[here.mapping == mapping]
        for prefix, style in (
            ("extrapolated", "-"),
            ("reconstructed_extrapolated", ":"),
            ("perturbed", "--"),
            ("feature_lens", (0, (3, 1, 1, 1, 1, 1))),
        ):
            points = sorted(
                (_alpha(c), v)
                for c, v in zip(mine.comparison, mine.value, strict=True)
                if c.startswith(f"{prefix}_x")
            )
            if points:
                ax.plot(*zip(*points, strict=True), linestyle=style, color=colour, marker=".")
    for name, style in (("manipulated", "-."), ("original", (0, (1, 3)))):
        level = here[here.mapping.isna() & (here.comparison == name)].value
        if len(level):
            ax.axhline(float(level.iloc[0]), color="black", linestyle=style, linewidth=0.8)
    ax.set_title(f"{backbone} · {layer}: {manipulation}", fontsize=LABEL_SIZE)
    ax.set_xlabel("α (x + α E(x))", fontsize=TICK_SIZE)
    ax.set_ylabel("target probability", fontsize=TICK_SIZE)
    ax.set_ylim(-0.02, 1.02)
    ax.tick_params(labelsize=TICK_SIZE)


# The two lenses' figure: image name in images.safetensors -> column title.
LENS_COLUMNS = (
    ("original", "original"),
    ("manipulated", "manipulated"),
    ("input_lens", "input lens (morph)"),
    ("reconstructed_feature_lens_matched", "feature lens, recon."),
)


def plot_edit_lenses(
    images: dict[str, np.ndarray], path: str | os.PathLike, settings: PlotSettings, title: str
) -> None:
    """The two lenses side by side: test images down; the original, the manipulated image, the
    input-space morph toward the target and the FeatInv reconstruction of the feature-space lens
    at the morph's feature-space norm across. Each panel says the driving classifier's target
    probability (`target_probability.{name}`). A column the cell lacks is left out (the feature
    lens where the layer's gradient is zero, or where the layer has no FeatInv model).

    Args:
        images: uint8 (N, R, R, 3) images and (N,) probabilities, as `edits.readings.edit_cell`
            saves them.
        path: The PNG to write.
        settings: Looks.
        title: The figure's title.
    """
    n = len(images["input_lens"])
    columns = [(name, label) for name, label in LENS_COLUMNS if name in images]
    side = min(0.45 * settings.panel_size, 14 / n)
    fig, axes = plt.subplots(
        n,
        len(columns),
        figsize=(side * len(columns) + 0.6, (side + 0.2) * n + 0.6),
        squeeze=False,
    )
    for column, (name, label) in enumerate(columns):
        probability = images.get(f"target_probability.{name}")
        for row in range(n):
            ax = _image_panel(axes[row, column], label if row == 0 else None)
            if column == 0:
                ax.set_ylabel(f"image {row}", fontsize=TICK_SIZE)
            ax.imshow(images[name][row], interpolation="nearest")
            if probability is not None:
                ax.set_xlabel(f"p(target) {probability[row]:.2f}", fontsize=TICK_SIZE)
    fig.suptitle(title, fontsize=TITLE_SIZE)
    save_figure(fig, path, settings)
