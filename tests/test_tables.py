"""The metrics table: fixed words, one row format, and a deterministic join."""

import pytest

from featlab.io import write_json
from featlab.tables import COLUMNS, aggregate, metric_row, without_accuracy


def test_metric_row_fills_every_column():
    row = metric_row("mapping", "cosine_median", 0.5, 10, backbone="cnn", mapping="ridge")
    assert set(row) == set(COLUMNS) - {"study"}
    assert row["layer"] == ""
    assert row["value"] == 0.5
    assert row["n"] == 10


@pytest.mark.parametrize(
    "columns",
    [{"mapping": "ridge_regression"}, {"split": "validation"}, {"colour": "red"}],
)
def test_words_outside_the_table_are_rejected(columns):
    with pytest.raises(ValueError, match="unknown"):
        metric_row("mapping", "mse", 1.0, 1, **columns)
    with pytest.raises(ValueError, match="stage"):
        metric_row("mappings", "mse", 1.0, 1)


def test_aggregate_is_sorted_and_independent_of_file_order(tmp_path):
    first = [metric_row("mapping", "mse", 2.0, 4, backbone="vit", split="test")]
    second = [
        metric_row("classifier", "top1_accuracy", 0.9, 4, backbone="cnn", split="test"),
        metric_row("mapping", "mse", 1.0, 4, backbone="cnn", split="test"),
    ]
    write_json(tmp_path / "a.json", first)
    write_json(tmp_path / "b.json", second)
    one = aggregate([tmp_path / "a.json", tmp_path / "b.json"], "demo")
    two = aggregate([tmp_path / "b.json", tmp_path / "a.json"], "demo")
    assert one.equals(two)
    assert list(one.columns) == list(COLUMNS)
    assert list(one.stage) == ["classifier", "mapping", "mapping"]
    assert set(one.study) == {"demo"}


def test_without_accuracy_keeps_every_row_that_needs_no_labels():
    rows = [
        metric_row("mapping", metric, 0.5, 4, split="test")
        for metric in ("top1_accuracy", "top5_accuracy", "top1_agreement", "jsd", "entropy")
    ]
    kept = [row["metric"] for row in without_accuracy(rows)]
    assert kept == ["top1_agreement", "jsd", "entropy"]
