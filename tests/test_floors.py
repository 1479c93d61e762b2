"""The quality floors of a faster study: each floor passes on a table that meets it, fails on a
table that falls short in one cell, and names the rows it lacks instead of passing without them."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import featlab
from featlab import floors
from featlab.floors import FloorSettings, MissingRows
from featlab.io import write_json
from featlab.tables import COLUMNS, aggregate, metric_row

REPO = Path(__file__).resolve().parents[1]
LAYERS = {"cnn": ("layer2", "layer4"), "vit": ("blocks.1", "blocks.3")}
MANIPULATIONS = ("rot90", "hue60")
TRAINED = {"additive": 0.75, "linear": 0.9, "local_linear": 0.91, "mlp": 0.92, "cnn": 0.93}
TRAINED["transformer"] = 0.92
SETTINGS = FloorSettings()


def classifier_rows() -> list[dict]:
    rows = []
    for backbone, accuracy in (("cnn", 0.95), ("vit", 0.93)):
        for split, manipulation, value in (("train", "", 1.0), ("test", "", accuracy)):
            rows.append(
                metric_row(
                    "classifier",
                    "top1_accuracy",
                    value,
                    400,
                    backbone=backbone,
                    manipulation=manipulation,
                    split=split,
                )
            )
        # a manipulated set's accuracy is no classifier's quality
        rows.append(
            metric_row(
                "classifier", "top1_accuracy", 0.4, 400, backbone=backbone, manipulation="rot90"
            )
        )
    return rows


def mapping_rows() -> list[dict]:
    """Identity 0.7, plain ridge below it (as in the default study), ridge_relative and the
    trained maps above; hue60 on the ViT's blocks.1 leaves the features as they are (0.995)."""
    rows = []
    for backbone, layers in LAYERS.items():
        for layer in layers:
            for manipulation in MANIPULATIONS:
                unchanged = (backbone, layer, manipulation) == ("vit", "blocks.1", "hue60")
                levels = {"identity": 0.995 if unchanged else 0.7, "ridge": 0.6}
                levels.update(ridge_relative=0.99 if unchanged else 0.9, **TRAINED)
                for mapping, level in levels.items():
                    comparison = "mapped_vs_manipulated"
                    if mapping == "mlp" and manipulation == "rot90":
                        comparison += "_spatial_first"
                    cell = dict(backbone=backbone, layer=layer, manipulation=manipulation)
                    cell.update(mapping=mapping, comparison=comparison)
                    for split, value in (("train", level + 0.02), ("test", level)):
                        rows.append(
                            metric_row("mapping", "cosine_median", value, 400, split=split, **cell)
                        )
                    rows.append(
                        metric_row("mapping", "cosine_masked", 0.1, 400, split="test", **cell)
                    )
                    # semantic consistency shares the comparison, not the metric
                    rows.append(
                        metric_row("mapping", "top1_agreement", 0.1, 400, split="test", **cell)
                    )
    return rows


def inversion_rows() -> list[dict]:
    """FeatInv on each backbone's deepest layer and, poorly, on a shallower one; the optimiser
    (poor too) on the deepest; a mapping's reconstructions, which no floor reads."""
    rows = []
    for backbone, (shallow, deep) in LAYERS.items():
        for manipulation in MANIPULATIONS:
            for layer, comparison, metric, value in (
                (deep, "reconstructed_original_vs_original", "top1_agreement", 0.89),
                (deep, "reconstructed_original_vs_original", "ssim", 0.84),
                (deep, "mean_image_vs_original", "ssim", 0.71),
                (deep, "optimised_reconstructed_original_vs_original", "top1_agreement", 0.5),
                (deep, "optimised_reconstructed_original_vs_original", "ssim", 0.5),
                (shallow, "reconstructed_original_vs_original", "top1_agreement", 0.3),
                (shallow, "reconstructed_original_vs_original", "ssim", 0.6),
                (shallow, "mean_image_vs_original", "ssim", 0.71),
            ):
                rows.append(
                    metric_row(
                        "inversion",
                        metric,
                        value,
                        64,
                        backbone=backbone,
                        layer=layer,
                        manipulation=manipulation,
                        comparison=comparison,
                        split="test",
                    )
                )
            rows.append(
                metric_row(
                    "inversion",
                    "top1_agreement",
                    0.2,
                    64,
                    backbone=backbone,
                    layer=deep,
                    manipulation=manipulation,
                    mapping="ridge",
                    comparison="mapped_vs_manipulated",
                    split="test",
                )
            )
    return rows


def lens_rows() -> list[dict]:
    """Three cases: at L2 2 the iterative morphs stay below 0.5, at 4 they reach the target."""
    probability = {"source": 0.02}
    for method, at_4 in (("steerable_phase", 0.81), ("pixel", 0.99), ("fourier_phase", 0.1)):
        probability |= {f"{method}_one_step_l2_2": 0.05, f"{method}_one_step_l2_4": 0.2}
        probability |= {f"{method}_iterative_l2_2": 0.3, f"{method}_iterative_l2_4": at_4}
    rows = []
    for case, shift in (("circle_to_square_0", -0.01), ("square_to_cross_0", 0.0)):
        for comparison, value in probability.items():
            for metric in ("target_probability", "transfer_probability"):
                rows.append(
                    metric_row(
                        "lens",
                        metric,
                        value + shift,
                        1,
                        backbone="cnn",
                        manipulation=case,
                        comparison=comparison,
                        split="test",
                    )
                )
    return rows


def filter_rows() -> list[dict]:
    fidelity = {"layer1": (0.47, 0.30), "layer2": (0.22, 0.18), "layer3": (0.05, 0.1)}
    return [
        metric_row(
            "filters",
            "fidelity",
            value,
            16,
            backbone="cnn",
            layer=layer,
            comparison=method,
            split="test",
        )
        for layer, pair in fidelity.items()
        for method, value in zip(("substitution", "deconvolution"), pair, strict=True)
    ]


def study_rows() -> list[dict]:
    return classifier_rows() + mapping_rows() + inversion_rows() + lens_rows() + filter_rows()


@pytest.fixture
def table() -> pd.DataFrame:
    """A table that meets every floor, in the columns the stages write."""
    return pd.DataFrame(study_rows()).assign(study="shapes")[list(COLUMNS)]


def changed(table: pd.DataFrame, value: float, **columns: str) -> pd.DataFrame:
    """A copy of the table with the value of the one row that matches `columns` replaced."""
    rows = floors.select(table, "the change", **columns)
    assert len(rows) == 1, rows
    copy = table.copy()
    copy.loc[rows.index, "value"] = value
    return copy


def without(table: pd.DataFrame, **columns: str) -> pd.DataFrame:
    return table.drop(floors.select(table, "the removal", **columns).index)


def failing(findings: list[floors.Finding]) -> list[str]:
    return [f.cell for f in findings if not f.passed]


def test_a_table_that_meets_every_floor_passes_against_itself(table):
    lines, passed = floors.report(table, table)
    assert passed, "\n".join(lines)
    assert [line.split()[0] for line in lines if not line.startswith(" ")] == ["PASS"] * 6
    assert all("before: PASS" in line for line in lines if line.startswith(" "))


def test_floor_1_holds_each_classifier_at_90_percent(table):
    findings = floors.classifier_accuracy(table, SETTINGS)
    assert [(f.cell, f.value) for f in findings] == [("cnn", 0.95), ("vit", 0.93)]
    low = changed(table, 0.89, stage="classifier", backbone="vit", manipulation="", split="test")
    assert failing(floors.classifier_accuracy(low, SETTINGS)) == ["vit"]
    gone = without(table, stage="classifier", backbone="vit", manipulation="", split="test")
    with pytest.raises(MissingRows, match="vit"):
        floors.classifier_accuracy(gone, SETTINGS)


def test_floor_2_holds_ridge_above_identity_only_where_the_features_change(table):
    findings = floors.ridge_beats_identity(table, SETTINGS)
    # 8 cells less the unchanged one; plain ridge, below the identity everywhere, is not held
    assert len(findings) == 7
    assert all(f.cell.endswith("ridge_relative") and f.passed for f in findings)
    cell = dict(stage="mapping", metric="cosine_median", split="test", backbone="cnn")
    cell.update(layer="layer4", manipulation="rot90", mapping="ridge_relative")
    below = changed(table, 0.69, **cell)
    assert failing(floors.ridge_beats_identity(below, SETTINGS)) == [
        "cnn layer4 rot90 ridge_relative"
    ]
    plain = floors.ridge_beats_identity(table, FloorSettings(ridge="ridge"))
    assert len(failing(plain)) == 7
    with pytest.raises(MissingRows, match=r"ridge_relative in 1 cells, e\.g\. cnn layer4 rot90"):
        floors.ridge_beats_identity(without(table, **cell), SETTINGS)


@pytest.mark.parametrize(("drop", "passes"), [(0.009, True), (0.011, False), (0.01, True)])
def test_floor_3_allows_a_trained_cell_a_hundredth_below_before(table, drop, passes):
    # mlp under rot90 was fitted with the spatial op first: its rows say so in `comparison`
    cell = dict(stage="mapping", metric="cosine_median", split="test", backbone="vit")
    cell.update(layer="blocks.3", manipulation="rot90", mapping="mlp")
    after = changed(table, TRAINED["mlp"] - drop, **cell)
    findings = floors.trained_against_before(table, after, SETTINGS)
    assert len(findings) == 2 * 2 * 2 * len(TRAINED)
    assert failing(findings) == ([] if passes else ["vit blocks.3 rot90 mlp"])


def test_floor_3_names_a_trained_cell_missing_after(table):
    cell = dict(stage="mapping", metric="cosine_median", split="test", backbone="cnn")
    cell.update(layer="layer2", manipulation="hue60", mapping="transformer")
    with pytest.raises(MissingRows, match=r"1 trained cells of before, e\.g\. cnn layer2 hue60"):
        floors.trained_against_before(table, without(table, **cell), SETTINGS)
    with pytest.raises(MissingRows, match="trained mapping"):
        floors.trained_against_before(table[~table.mapping.isin(TRAINED)], table, SETTINGS)


def test_floor_4_reads_featinv_on_the_deepest_layers_only(table):
    findings = floors.featinv_deepest(table, SETTINGS)
    cells = {f.cell.rsplit(" ", 2)[0] for f in findings}
    assert cells == {"cnn layer4", "vit blocks.3"}
    assert len(findings) == 2 * 2 * 2
    assert all(f.passed for f in findings)
    cell = dict(stage="inversion", backbone="vit", layer="blocks.3", manipulation="hue60")
    cell.update(comparison="reconstructed_original_vs_original")
    low = changed(table, 0.79, metric="top1_agreement", **cell)
    assert failing(floors.featinv_deepest(low, SETTINGS)) == ["vit blocks.3 hue60 top1_agreement"]
    blurred = changed(table, 0.71, metric="ssim", **cell)  # the mean image's, not above it
    assert failing(floors.featinv_deepest(blurred, SETTINGS)) == ["vit blocks.3 hue60 ssim"]
    floor = {**cell, "comparison": "mean_image_vs_original", "metric": "ssim"}
    with pytest.raises(MissingRows, match=r"mean_image_vs_original ssim in vit blocks\.3 hue60"):
        floors.featinv_deepest(without(table, **floor), SETTINGS)
    with pytest.raises(MissingRows, match="of vit"):
        floors.featinv_deepest(without(table, stage="inversion", backbone="vit"), SETTINGS)


def test_floor_5_lens_takes_the_median_case_at_the_largest_budget(table):
    findings = floors.lens_reach(table, SETTINGS)
    assert [f.cell for f in findings] == [
        "cnn steerable_phase_iterative at L2 4, median of 2 cases",
        "cnn pixel_iterative at L2 4, median of 2 cases",
    ]
    assert np.allclose([f.value for f in findings], [0.805, 0.985])
    assert findings[0].note == "source median 0.0150"
    cell = dict(
        stage="lens", metric="target_probability", comparison="steerable_phase_iterative_l2_4"
    )
    low = changed(table, 0.1, manipulation="square_to_cross_0", **cell)
    assert len(failing(floors.lens_reach(low, SETTINGS))) == 1
    pixel = table[~table.comparison.str.startswith("pixel_iterative")]
    with pytest.raises(MissingRows, match="pixel_iterative"):
        floors.lens_reach(pixel, SETTINGS)


def test_floor_5_filters_holds_substitution_above_deconvolution_on_layer1_and_layer2(table):
    findings = floors.filters_substitution(table, SETTINGS)
    assert [(f.cell, f.passed) for f in findings] == [("cnn layer1", True), ("cnn layer2", True)]
    cell = dict(stage="filters", layer="layer2", comparison="deconvolution")
    assert failing(floors.filters_substitution(changed(table, 0.23, **cell), SETTINGS)) == [
        "cnn layer2"
    ]
    with pytest.raises(MissingRows, match="cnn layer1"):
        floors.filters_substitution(without(table, stage="filters", layer="layer1"), SETTINGS)


def test_a_missing_floor_fails_the_report_and_is_shown_for_before(table):
    after = table[table.stage != "filters"]
    lines, passed = floors.report(table, after)
    assert not passed
    assert (
        "FAIL floor 5 filters: substitution beats deconvolution: missing rows: no rows of the "
        in ("\n".join(lines))
    )
    lines, passed = floors.report(after, table)  # before lacks it: shown, not held
    assert passed
    assert any(
        line.startswith("    before: FAIL missing rows: no rows of the decoded") for line in lines
    )


def write_table(folder: Path, rows: list[dict]) -> Path:
    """The table as the workflow writes it: each stage's JSON rows joined by `aggregate`."""
    write_json(folder / "rows.json", rows)
    path = folder / "metrics.csv"
    aggregate([folder / "rows.json"], "shapes").to_csv(path, index=False)
    return path


def test_the_script_passes_a_table_against_itself_and_fails_a_worse_one(tmp_path):
    rows = study_rows()
    rows.append(metric_row("mapping", "cosine_masked", float("nan"), 0, split="test"))
    before = write_table(tmp_path, rows)
    assert floors.read_table(before).value.isna().sum() == 1  # an undefined metric stays NaN
    for row in rows:
        if row["mapping"] == "cnn" and row["metric"] == "cosine_median" and row["split"] == "test":
            row["value"] -= 0.02
    (tmp_path / "after").mkdir()
    after = write_table(tmp_path / "after", rows)
    script = [sys.executable, str(REPO / "bench" / "quality_floors.py")]
    env = {**os.environ, "PYTHONPATH": str(Path(featlab.__file__).parents[1])}
    same = subprocess.run([*script, before, before], capture_output=True, text=True, env=env)
    assert same.returncode == 0, same.stdout + same.stderr
    assert same.stdout.count("PASS floor") == 6
    worse = subprocess.run([*script, before, after], capture_output=True, text=True, env=env)
    assert worse.returncode == 1, worse.stdout + worse.stderr
    assert "FAIL floor 3 trained mappings' test cosine against before: 48 cells, 8 failing" in (
        worse.stdout
    )
    assert "  FAIL cnn layer4 rot90 cnn: 0.9100, needs >= 0.9200 (before 0.9300)" in worse.stdout
