"""Figures of the study, drawn from the metrics table and stored artifacts alone.

One module per stage's figures (`featmap`, `filters`, `lens`, `featinv`, `edits`) over what they
share (`base`: settings, sizes, colours, legend, layer order, saving).
"""

from featlab.plots.base import PlotSettings
from featlab.plots.edits import plot_edit_lenses, plot_edit_probability, plot_edit_strip
from featlab.plots.featinv import (
    FEATINV_COLUMNS,
    plot_featinv_grid,
    plot_inversion_scores,
    plot_inverters,
)
from featlab.plots.featmap import (
    plot_cosine_by_layer,
    plot_linear_structure,
    plot_rank_curves,
    plot_relative_cosine,
)
from featlab.plots.filters import plot_filter_grid
from featlab.plots.lens import LENS_METRICS, draw_strip, plot_lens_summary, write_gif

__all__ = [
    "FEATINV_COLUMNS",
    "LENS_METRICS",
    "PlotSettings",
    "draw_strip",
    "plot_cosine_by_layer",
    "plot_edit_lenses",
    "plot_edit_probability",
    "plot_edit_strip",
    "plot_featinv_grid",
    "plot_filter_grid",
    "plot_inversion_scores",
    "plot_inverters",
    "plot_lens_summary",
    "plot_linear_structure",
    "plot_rank_curves",
    "plot_relative_cosine",
    "write_gif",
]
