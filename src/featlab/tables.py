"""The study's metrics table: a tidy long table with fixed, documented words.

Every stage writes a JSON list of rows with these columns (empty strings where a column does not
apply); `aggregate` joins them into `results/{study}/tables/metrics.csv`.
"""

import os
import re
from collections.abc import Iterable
from typing import TYPE_CHECKING

from featlab.io import read_json

if TYPE_CHECKING:
    import pandas as pd

COLUMNS = (
    "study",
    "stage",
    "backbone",
    "layer",
    "manipulation",
    "mapping",
    "comparison",
    "split",
    "metric",
    "value",
    "n",
)
STAGES = ("classifier", "mapping", "analysis", "inversion", "lens", "filters", "edits")
MAPPINGS = (
    "identity",
    "spatial",
    "additive",
    "linear",
    "ridge",
    "procrustes",
    "ridge_relative",
    "procrustes_relative",
    "local_linear",
    "mlp",
    "cnn",
    "transformer",
)
SPLITS = ("train", "val", "test")


def metric_row(stage: str, metric: str, value: float, n: int, **columns: str) -> dict:
    """One row of the metrics table; checks the fixed words so that a typo cannot slip in."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; the table's stages are {STAGES}")
    if columns.get("mapping") and columns["mapping"] not in MAPPINGS:
        raise ValueError(
            f"unknown mapping {columns['mapping']!r}; the table's mappings are {MAPPINGS}"
        )
    if columns.get("split") and columns["split"] not in SPLITS:
        raise ValueError(f"unknown split {columns['split']!r}; use one of {SPLITS}")
    unknown = set(columns) - set(COLUMNS)
    if unknown:
        raise ValueError(f"unknown columns {sorted(unknown)}; the table's columns are {COLUMNS}")
    row = {column: "" for column in COLUMNS if column != "study"}
    row.update(columns, stage=stage, metric=metric, value=float(value), n=int(n))
    return row


def without_accuracy(rows: list[dict]) -> list[dict]:
    """The rows that do not score a classifier against the data's labels (`top1_accuracy`,
    `top5_accuracy`, ...): for a head whose classes are not the data set's, where accuracy would
    compare indices of two label spaces. Agreement, JSD and entropy rows need no labels."""
    return [row for row in rows if not re.fullmatch(r"top\d+_accuracy", row["metric"])]


def aggregate(paths: Iterable[str | os.PathLike], study: str) -> "pd.DataFrame":
    """Join metrics files into one table, sorted so that equal inputs give an equal file."""
    # Imported here: every stage writes rows through this module, and pandas costs each of those
    # hundreds of short jobs half a second.
    import pandas as pd

    rows = [row for path in paths for row in read_json(path)]
    table = pd.DataFrame(rows, columns=[c for c in COLUMNS if c != "study"])
    table.insert(0, "study", study)
    keys = [c for c in COLUMNS if c not in ("value", "n")]
    return table.sort_values(keys, kind="stable").reset_index(drop=True)
