"""Every figure at a page's size, and the FeatMap figures' scales, on study-shaped tables."""

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from study_tables import (
    DEFAULT_STUDY,
    GEOMETRIC,
    MAX_FIGURE_SIDE,
    TINY_STUDY,
    synthetic_table,
    write_lens_case,
)

from featlab import plots
from featlab.plots.featinv import shared_cells
from featlab.tables import MAPPINGS

TABLE_FIGURES = (
    plots.plot_cosine_by_layer,
    plots.plot_relative_cosine,
    plots.plot_linear_structure,
    plots.plot_rank_curves,
    plots.plot_lens_summary,
    plots.plot_inversion_scores,
    plots.plot_inverters,
    plots.plot_edit_probability,
)
# what the default and the tiny study draw of the figures made from stored artifacts
ARTIFACT_SHAPES = {
    "default": dict(image_size=64, budgets=(2, 4), frames=5, neurons=16, mappings=5, rows=6),
    "tiny": dict(image_size=32, budgets=(0.5, 1.0), frames=3, neurons=4, mappings=3, rows=4),
}


def assert_fits(path) -> None:
    width, height = Image.open(path).size
    assert width <= MAX_FIGURE_SIDE, f"{path.name} is {width} px wide"
    assert height <= MAX_FIGURE_SIDE, f"{path.name} is {height} px high"


@pytest.mark.parametrize("shape", [DEFAULT_STUDY, TINY_STUDY], ids=["default", "tiny"])
@pytest.mark.parametrize("figure", TABLE_FIGURES, ids=lambda f: f.__name__)
def test_every_table_figure_fits_a_page(figure, shape, tmp_path):
    path = tmp_path / "figure.png"
    figure(synthetic_table(shape), path, plots.PlotSettings())
    assert_fits(path)


@pytest.mark.parametrize("study", ARTIFACT_SHAPES)
def test_every_artifact_figure_fits_a_page(study, tmp_path):
    shape, settings = ARTIFACT_SHAPES[study], plots.PlotSettings()
    rng = np.random.default_rng(0)
    frames, morphs = write_lens_case(
        tmp_path, shape["image_size"], shape["budgets"], shape["frames"]
    )
    plots.draw_strip(frames, morphs, tmp_path / "strip.png")
    n, side = shape["neurons"], shape["image_size"]
    filters = {m: rng.normal(size=(n, 3, 43, 43)) for m in ("substitution", "deconvolution")}
    fidelity = {m: rng.uniform(0, 1, n) for m in filters}
    plots.plot_filter_grid(
        filters, np.arange(n), fidelity, tmp_path / "filters.png", settings, "cnn · layer1"
    )
    images = rng.integers(0, 256, (8, side, side, 3), dtype=np.uint8)
    names = [name for name, _ in plots.FEATINV_COLUMNS]
    references = {name: images for name in names + [f"optimised_{n}" for n in names[2:]]}
    both = {"mapped": images, "optimised_mapped": images}
    mapped = {f"mapping{i}": both for i in range(shape["mappings"])}
    title = "cnn · layer4: rot90"
    plots.plot_featinv_grid(
        references, mapped, tmp_path / "featinv.png", settings, title, shape["rows"]
    )
    edits = {name: images[: shape["rows"]] for name in ("original", "manipulated")}
    edits["reconstructed_manipulated"] = edits["original"]
    for mapping in ("ridge", "linear"):
        for name in ("extrapolated_x-1", "extrapolated_x0", "extrapolated_x0.5", "extrapolated_x1"):
            edits[f"{mapping}/{name}"] = edits["original"]
        for name in ("extrapolated_x1.5", "extrapolated_x2", "extrapolated_x3", "truncated_k1"):
            edits[f"{mapping}/{name}"] = edits["original"]
        for name in ("truncated_k4", "truncated_k16", "perturbed_x-1", "feature_lens_x2"):
            edits[f"{mapping}/{name}"] = edits["original"]
    plots.plot_edit_strip(edits, tmp_path / "edits.png", settings, title)
    lenses = {**edits, "input_lens": edits["original"], "image_index": np.arange(shape["rows"])}
    lenses["target_probability.input_lens"] = rng.uniform(0, 1, shape["rows"])
    plots.plot_edit_lenses(lenses, tmp_path / "lenses.png", settings, title)
    for name in ("strip", "filters", "featinv", "edits", "lenses"):
        assert_fits(tmp_path / f"{name}.png")


def test_the_two_lenses_figure_leaves_out_a_missing_feature_lens(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    lenses = {name: images for name in ("original", "manipulated", "input_lens")}
    settings = plots.PlotSettings()
    plots.plot_edit_lenses(lenses, tmp_path / "three.png", settings, "vit · blocks.3")
    lenses["reconstructed_feature_lens_matched"] = images
    plots.plot_edit_lenses(lenses, tmp_path / "four.png", settings, "cnn · layer4")
    three, four = (Image.open(tmp_path / f"{n}.png").size[0] for n in ("three", "four"))
    assert three < 0.85 * four  # a column narrower, not a blank column


def test_the_lens_strip_puts_budgets_side_by_side(tmp_path):
    frames, morphs = write_lens_case(tmp_path, 64, (2, 4), 5)
    plots.draw_strip(frames, morphs, tmp_path / "strip.png")
    width, height = Image.open(tmp_path / "strip.png").size
    # 4 methods x 2 variants rows of 128 px tiles; two budgets of 5 frames each
    assert width > 2 * 5 * 128
    assert 8 * 128 < height < 9 * 128 + 200


@pytest.fixture
def drawn(monkeypatch) -> list:
    """The figures the plot functions draw, kept open instead of saved."""
    figures = []
    for module in (plots.featmap, plots.filters, plots.lens, plots.featinv):
        monkeypatch.setattr(module, "save_figure", lambda fig, path, settings: figures.append(fig))
    yield figures
    for fig in figures:
        plt.close(fig)


def heatmap_cells(ax) -> dict[tuple[int, int], str]:
    """The text printed in each (row, column) cell of a heatmap panel."""
    return {
        (round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts
    }


def test_relative_cosine_prints_every_cell_and_marks_what_does_not_apply(drawn):
    table = synthetic_table(DEFAULT_STUDY)
    plots.plot_relative_cosine(table, "unused.png", plots.PlotSettings())
    (fig,) = drawn
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    assert len(panels) == 6
    ax = panels["cnn · layer3"]
    mappings = [t.get_text() for t in ax.get_yticklabels()]
    manipulations = sorted(DEFAULT_STUDY.manipulations)
    cells = heatmap_cells(ax)
    assert len(cells) == len(mappings) * len(manipulations)
    spatial = mappings.index("spatial")
    for j, manipulation in enumerate(manipulations):
        assert (cells[(spatial, j)] == "n/a") == (manipulation not in GEOMETRIC)
        # the best mapping of each manipulation prints 1.00, every other cell its ratio
        values = [float(cells[(i, j)]) for i in range(len(mappings)) if cells[(i, j)] != "n/a"]
        assert max(values) == 1.0
        assert all(0 < v <= 1 for v in values)
    cosines = (
        table[
            (table.stage == "mapping")
            & (table.metric == "cosine_median")
            & (table.backbone == "cnn")
            & (table.layer == "layer3")
            & (table.manipulation == "hue60")
        ]
        .set_index("mapping")
        .value
    )
    ridge = cosines["ridge"] / cosines.max()
    assert cells[(mappings.index("ridge"), manipulations.index("hue60"))] == f"{ridge:.2f}"


def test_relative_cosine_colours_span_the_values_not_0_to_1(drawn):
    table = synthetic_table(DEFAULT_STUDY)
    plots.plot_relative_cosine(table, "unused.png", plots.PlotSettings())
    image = next(ax.images[0] for ax in drawn[0].axes if ax.images)
    norm, values = image.norm, image.get_array().compressed()
    assert norm.vmax == 1
    assert 0.4 < norm.vmin <= values.min() < norm.vmin + 0.05
    # mappings 0.05 apart are a tenth of the scale apart (on 0 to 1 they were a twentieth)
    assert norm(0.95) - norm(0.9) > 0.08


def test_cosine_by_layer_draws_one_panel_per_manipulation_and_one_legend(drawn):
    plots.plot_cosine_by_layer(synthetic_table(DEFAULT_STUDY), "unused.png", plots.PlotSettings())
    (fig,) = drawn
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == sorted(DEFAULT_STUDY.manipulations)
    legends = [ax.get_legend() for ax in fig.axes if ax.get_legend()] + fig.legends
    (legend,) = legends
    assert [t.get_text() for t in legend.get_texts()] == list(MAPPINGS)
    # both backbones' layers on each panel's x axis, each backbone named under its layers
    ax = fig.axes[0]
    layers = [t.get_text() for t in ax.get_xticklabels()]
    assert layers == [*DEFAULT_STUDY.layers["cnn"], *DEFAULT_STUDY.layers["vit"]]
    assert [t.get_text() for t in ax.get_xticklabels(minor=True)] == ["cnn", "vit"]
    # every mapping's line of a panel: one per backbone
    assert len(ax.lines) == 2 * len(MAPPINGS) + 1  # and the dotted divider


def test_cosine_by_layer_spreads_cosines_near_1_as_far_as_their_errors_differ(drawn):
    plots.plot_cosine_by_layer(synthetic_table(DEFAULT_STUDY), "unused.png", plots.PlotSettings())
    ax = drawn[0].axes[0]
    heights = [ax.transData.transform((0, c))[1] for c in (0.9, 0.99, 0.999)]
    assert heights[2] - heights[1] == pytest.approx(heights[1] - heights[0])
    low, high = ax.get_ylim()  # the panel's values, not 0 to 1
    values = (
        synthetic_table(DEFAULT_STUDY)
        .query("stage == 'mapping' and metric == 'cosine_median' and manipulation == 'flip_h'")
        .value
    )
    assert low < values.min() < values.max() < high < 1


def test_rank_curves_put_backbones_in_columns_and_layers_in_rows(drawn):
    plots.plot_rank_curves(synthetic_table(DEFAULT_STUDY), "unused.png", plots.PlotSettings())
    grid = drawn[0].axes[0].get_subplotspec().get_gridspec()
    assert (grid.nrows, grid.ncols) == (3, 2)
    assert len(drawn[0].legends) == 1


def test_the_inverters_figure_compares_both_inverters_on_the_same_cells():
    """FeatInv inverts more manipulations and mappings than the optimiser: a layer's bars keep
    only the cells both scored; a layer one inverter alone reached keeps all of its rows."""

    def row(layer, manipulation, mapping, comparison):
        return dict(
            backbone="cnn",
            layer=layer,
            manipulation=manipulation,
            mapping=mapping,
            comparison=comparison,
            metric="ssim",
            value=0.5,
        )

    rows = pd.DataFrame(
        [
            row("layer4", "rot90", "", "reconstructed_original_vs_original"),
            row("layer4", "rot90", "", "optimised_reconstructed_original_vs_original"),
            row("layer4", "rot90", "", "mean_image_vs_original"),
            row("layer4", "rot90", "ridge", "mapped_vs_manipulated"),
            row("layer4", "rot90", "ridge", "optimised_mapped_vs_manipulated"),
            row("layer4", "rot90", "linear", "mapped_vs_manipulated"),  # FeatInv only
            row("layer4", "hue60", "", "reconstructed_original_vs_original"),  # FeatInv only
            row("layer4", "hue60", "", "mean_image_vs_original"),
            row("layer3", "rot90", "", "optimised_reconstructed_original_vs_original"),
            row("layer3", "rot90", "ridge", "optimised_mapped_vs_manipulated"),
        ]
    )
    assert sorted(shared_cells(rows).index) == [0, 1, 2, 3, 4, 8, 9]
    # as the workflow reads the table: an empty mapping is NaN
    rows["mapping"] = rows.mapping.replace("", np.nan)
    assert sorted(shared_cells(rows).index) == [0, 1, 2, 3, 4, 8, 9]
