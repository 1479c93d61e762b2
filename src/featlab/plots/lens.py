"""Steerable lens figures: the summary by L2 budget, and each case's morphs as a frame strip
and an animated GIF (drawn from the case's frames.safetensors and morphs.json)."""

import os

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFont
from safetensors.numpy import load_file

from featlab.io import atomic_path, read_json
from featlab.plots.base import (
    PlotSettings,
    colour_map,
    save_figure,
    select_rows,
)

LENS_METRICS = ("target_probability", "transfer_probability", "warp_share", "warp_gain_share")


def plot_lens_summary(table: pd.DataFrame, path: str | os.PathLike, settings: PlotSettings) -> None:
    """The steerable lens by L2 budget: one panel per (driving backbone, metric), one line per
    method (colour) and variant (solid: iterative, dashed: one_step), the median over cases; the
    grey dotted line is the source images' median."""
    rows = select_rows(table, "lens", stage="lens")
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
    colours = colour_map(methods)
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
    save_figure(fig, path, settings)


def _font(size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _read_case(
    frames_path: str | os.PathLike, morphs_path: str | os.PathLike
) -> tuple[dict[str, np.ndarray], dict, list[dict], list[tuple[str, str]], list[float]]:
    """A case's frames (comparison -> (frames, H, W, 3) uint8), its morphs.json, the records of
    its morphs, and the grid they are drawn in: (method, variant) rows and budget columns."""
    frames = load_file(frames_path)
    case = read_json(morphs_path)
    records = [r for r in case["records"] if r["method"] is not None]
    rows = list(dict.fromkeys((r["method"], r["variant"]) for r in records))
    budgets = list(dict.fromkeys(r["budget"] for r in records))
    return frames, case, records, rows, budgets


def draw_strip(
    frames_path: str | os.PathLike,
    morphs_path: str | os.PathLike,
    path: str | os.PathLike,
    scale: int = 2,
) -> None:
    """One row per method and variant, one block of columns per budget: each morph's frames from
    the source to the final frame, each with the driving classifier's target probability."""
    frames, case, records, rows, budgets = _read_case(frames_path, morphs_path)
    n_frames, height = next(iter(frames.values())).shape[:2]
    tile, label_width, header, gap = height * scale, 250, 56, 14
    block = n_frames * tile + gap  # one budget's frames and the space after them
    font = _font(max(10, tile // 10))
    size = (label_width + len(budgets) * block, header + len(rows) * (tile + gap))
    canvas = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 4), f"{case['backbone']}: {case['case']}", fill="black", font=font)
    for column, budget in enumerate(budgets):
        draw.text((label_width + column * block, header // 2), f"L2 = {budget:g}", "black", font)
    for row, (method, variant) in enumerate(rows):
        top = header + row * (tile + gap) + tile // 4
        draw.multiline_text((4, top), f"{method}\n{variant}", "black", font)
    for record in records:
        top = header + rows.index((record["method"], record["variant"])) * (tile + gap)
        start = label_width + budgets.index(record["budget"]) * block
        for t, picture in enumerate(frames[record["comparison"]]):
            left = start + t * tile
            canvas.paste(Image.fromarray(picture).resize((tile, tile), Image.NEAREST), (left, top))
            probability = record["frame_target_probability"][t]
            draw.text((left + 2, top + tile), f"p={probability:.2f}", fill="black", font=_font(10))
    with atomic_path(path) as temporary:
        canvas.save(temporary, format="PNG")


def write_gif(
    frames_path: str | os.PathLike,
    morphs_path: str | os.PathLike,
    path: str | os.PathLike,
    scale: int = 2,
) -> None:
    """An animated grid: one row per method and variant, one column per budget, in step."""
    frames, _, records, rows, budgets = _read_case(frames_path, morphs_path)
    n_frames, height = next(iter(frames.values())).shape[:2]
    tile, label_width, header = height * scale, 230, 20
    font = _font(max(10, tile // 10))
    pictures = []
    for t in range(n_frames):
        size = (label_width + len(budgets) * tile, header + len(rows) * tile)
        canvas = Image.new("RGB", size, "white")
        draw = ImageDraw.Draw(canvas)
        for column, budget in enumerate(budgets):
            draw.text((label_width + column * tile + 2, 2), f"L2 = {budget:g}", "black", font)
        for record in records:
            row = rows.index((record["method"], record["variant"]))
            column = budgets.index(record["budget"])
            if column == 0:
                draw.text((4, header + row * tile + tile // 3), " ".join(rows[row]), "black", font)
            picture = Image.fromarray(frames[record["comparison"]][t])
            position = (label_width + column * tile, header + row * tile)
            canvas.paste(picture.resize((tile, tile), Image.NEAREST), position)
        pictures.append(canvas)
    durations = [400] * (n_frames - 1) + [1200]  # hold the final frame
    with atomic_path(path) as temporary:
        pictures[0].save(
            temporary,
            format="GIF",
            save_all=True,
            append_images=pictures[1:],
            duration=durations,
            loop=0,
        )
