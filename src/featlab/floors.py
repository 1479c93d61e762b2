"""The quality floors of a faster study: what the default study must still show after a change
that makes it faster, read from its metrics table (README, "The metrics table").

A change is held to a saved copy of the table from before it (`before`) and the table of a run
after it (`after`). The floors:

1. Classifiers: each backbone's top-1 accuracy on the original test images (stage `classifier`,
   empty `manipulation`, split `test`) is at least 0.9.
2. Ridge beats the identity wherever the manipulation changes the features: in every (backbone,
   layer, manipulation) whose identity test `cosine_median` is below 0.99 (the manipulation
   moves the features; at 0.99 or above there is nothing for a map to learn), the ridge map's
   test `cosine_median` is above the identity's. The ridge map is `ridge_relative`, the study's
   closed form on relative errors (bench/RESULTS.md: never below the identity): the FeatMap
   paper's plain `ridge` falls below the identity in 27 of the default study's 84 cells
   (bench/RESULTS.md), so on it the floor would fail before any change.
3. Trained mappings (`featlab.mapping.fit.TRAINED`): in every (backbone, layer, manipulation,
   mapping) of `before`, the test `cosine_median` of `mapped_vs_manipulated` (or of
   `mapped_vs_manipulated_spatial_first`, for a map that applies the spatial op first) is at
   most 0.01 below `before`'s (a cell new in `after` has no `before` to be held to).
4. FeatInv on each backbone's deepest FeatInv layer (network order of the layers with FeatInv
   rows): its reconstructions of the original test images from their own features
   (`reconstructed_original_vs_original`; the optimiser's carry the prefix `optimised_` and are
   not FeatInv's) reach a `top1_agreement` of at least 0.8 and an `ssim` above the mean train
   image's (`mean_image_vs_original`), in every inverted manipulation of that layer.
5. Lens: for each driving backbone, the iterative steerable-phase and pixel morphs reach the
   target: the median over cases of the driver's `target_probability` at the largest budget
   (`{method}_iterative_l2_{budget}`) is above 0.5 (config.yaml: 81% and 99% at L2 4, from 2%).
   Filters: for each decoded backbone, substitution's mean `fidelity` is above deconvolution's on
   `layer1` and on `layer2`.

Floor 3 compares `after` with `before`; the others are absolute, held on `after` and shown for
`before`. A floor whose rows are missing raises `MissingRows`, naming them: no floor passes on
rows that are not there.
"""

import dataclasses
import os
import re
from collections.abc import Callable

import numpy as np
import pandas as pd

from featlab.mapping.fit import TRAINED
from featlab.mapping.pairs import COMPARISON, SPATIAL_FIRST
from featlab.tables import COLUMNS

# The comparisons of a mapping's own scores, without and with the spatial op applied first.
MAPPED = (COMPARISON, f"{COMPARISON}_{SPATIAL_FIRST}")
FEATINV = "reconstructed_original_vs_original"  # FeatInv's reconstructions of the originals
MEAN_IMAGE = "mean_image_vs_original"  # the floor of the image scores
EPSILON = 1e-9  # what `>=` forgives: 0.9 - 0.01 is not exactly 0.89 in floating point


class MissingRows(ValueError):
    """The table lacks rows that a floor needs."""


@dataclasses.dataclass(frozen=True)
class FloorSettings:
    """The floors' numbers and the words they read."""

    accuracy: float = 0.9  # 1: least test accuracy of each classifier
    unchanged: float = 0.99  # 2: an identity cosine at least this means the features did not move
    ridge: str = "ridge_relative"  # 2: the ridge map held above the identity
    tolerance: float = 0.01  # 3: how far a trained cell's test cosine may fall below before's
    agreement: float = 0.8  # 4: least top-1 agreement of FeatInv's reconstructions
    reached: float = 0.5  # 5: median target probability above which a morph reaches its target
    lens_methods: tuple[str, ...] = ("steerable_phase", "pixel")  # 5: the iterative morphs held
    filter_layers: tuple[str, ...] = ("layer1", "layer2")  # 5: where substitution must win


@dataclasses.dataclass(frozen=True)
class Finding:
    """One compared number: `value` held to `bound` by `relation` (`>=` or `>`)."""

    cell: str  # what was compared, e.g. "cnn layer4 rot90 mlp"
    value: float
    relation: str
    bound: float
    note: str = ""  # where the bound comes from, e.g. "before 0.912"

    @property
    def passed(self) -> bool:
        if self.relation == ">=":
            return bool(self.value >= self.bound - EPSILON)
        return bool(self.value > self.bound)

    @property
    def margin(self) -> float:
        return self.value - self.bound

    def __str__(self) -> str:
        note = f" ({self.note})" if self.note else ""
        return f"{self.cell}: {self.value:.4f}, needs {self.relation} {self.bound:.4f}{note}"


# --- Reading the table ----------------------------------------------------------------------------


def read_table(path: str | os.PathLike) -> pd.DataFrame:
    """A metrics table as the workflow wrote it, empty columns as empty strings (a missing
    `value`, an undefined metric, as NaN)."""
    words = {column: str for column in COLUMNS if column not in ("value", "n")}
    return pd.read_csv(path, dtype=words, keep_default_na=False, na_values={"value": [""]})


def select(table: pd.DataFrame, what: str, **columns: str) -> pd.DataFrame:
    """The rows whose columns equal the given words ("" for an empty column, read as "" or NaN);
    `MissingRows` naming `what` when there are none."""
    chosen = pd.Series(True, index=table.index)
    for column, word in columns.items():
        chosen &= table[column].fillna("").astype(str) == word
    if not chosen.any():
        where = ", ".join(f"{column}={word!r}" for column, word in columns.items())
        raise MissingRows(f"no rows of {what} ({where})")
    return table[chosen]


def values(rows: pd.DataFrame, keys: tuple[str, ...]) -> dict[tuple[str, ...], float]:
    """The rows' values by their `keys` columns; two rows of one key stop with an error."""
    words = rows[list(keys)].fillna("").astype(str)
    duplicated = words.duplicated(keep=False)
    if duplicated.any():
        first = tuple(words[duplicated].iloc[0])
        raise ValueError(f"more than one row for {' '.join(first)}: is the table joined twice?")
    return dict(zip(map(tuple, words.to_numpy()), rows["value"].astype(float), strict=True))


def backbones(table: pd.DataFrame) -> list[str]:
    """The study's backbones: every backbone the table names."""
    return sorted(set(table["backbone"].fillna("").astype(str)) - {""})


def network_order(layer: str) -> list:
    """Sort key of timm layer names in network order: `blocks.2` before `blocks.10`."""
    return [int(part) if part.isdigit() else part for part in layer.replace(".", " ").split()]


# --- The floors -----------------------------------------------------------------------------------


def classifier_accuracy(table: pd.DataFrame, settings: FloorSettings) -> list[Finding]:
    """Floor 1: each backbone's test accuracy on the original images."""
    rows = select(
        table,
        "the classifiers' accuracy",
        stage="classifier",
        metric="top1_accuracy",
        split="test",
        manipulation="",
    )
    accuracy = values(rows, ("backbone",))
    missing = [b for b in backbones(table) if (b,) not in accuracy]
    if missing:
        raise MissingRows(f"no test accuracy of the original images for {missing}")
    return [Finding(b, v, ">=", settings.accuracy) for (b,), v in sorted(accuracy.items())]


def mapping_cosines(table: pd.DataFrame) -> dict[tuple[str, ...], float]:
    """Test `cosine_median` of every mapping's own comparison, by (backbone, layer, manipulation,
    mapping)."""
    rows = select(
        table, "the mappings' test cosine", stage="mapping", metric="cosine_median", split="test"
    )
    rows = rows[rows["comparison"].isin(MAPPED)]
    return values(rows, ("backbone", "layer", "manipulation", "mapping"))


def ridge_beats_identity(table: pd.DataFrame, settings: FloorSettings) -> list[Finding]:
    """Floor 2: the ridge map above the identity wherever the identity is below `unchanged`."""
    cosines = mapping_cosines(table)
    identity = {cell[:3]: v for cell, v in cosines.items() if cell[3] == "identity"}
    if not identity:
        raise MissingRows("no test cosine_median of the identity mapping")
    changed = sorted(cell for cell, v in identity.items() if v < settings.unchanged)
    if not changed:
        raise MissingRows(f"no cell whose identity cosine is below {settings.unchanged}")
    missing = [cell for cell in changed if (*cell, settings.ridge) not in cosines]
    if missing:
        raise MissingRows(
            f"no test cosine_median of {settings.ridge} in {len(missing)} cells, e.g. "
            f"{' '.join(missing[0])}"
        )
    return [
        Finding(
            " ".join((*cell, settings.ridge)),
            cosines[(*cell, settings.ridge)],
            ">",
            identity[cell],
            "identity",
        )
        for cell in changed
    ]


def trained_cosines(table: pd.DataFrame) -> dict[tuple[str, ...], float]:
    """`mapping_cosines` of the trained mappings alone; `MissingRows` when there are none."""
    trained = {cell: v for cell, v in mapping_cosines(table).items() if cell[3] in TRAINED}
    if not trained:
        raise MissingRows(f"no test cosine_median of a trained mapping ({', '.join(TRAINED)})")
    return trained


def trained_against_before(
    before: pd.DataFrame, after: pd.DataFrame, settings: FloorSettings
) -> list[Finding]:
    """Floor 3: no trained cell of `before` more than `tolerance` below it in `after`."""
    old, new = trained_cosines(before), trained_cosines(after)
    missing = sorted(set(old) - set(new))
    if missing:
        raise MissingRows(
            f"after lacks {len(missing)} trained cells of before, e.g. {' '.join(missing[0])}"
        )
    return [
        Finding(" ".join(cell), new[cell], ">=", old[cell] - settings.tolerance, f"before {v:.4f}")
        for cell, v in sorted(old.items())
    ]


def featinv_deepest(table: pd.DataFrame, settings: FloorSettings) -> list[Finding]:
    """Floor 4: FeatInv's reconstructions of the originals on each backbone's deepest FeatInv
    layer, top-1 agreement and SSIM against the mean image's, per inverted manipulation."""
    inversion = dict(stage="inversion", split="test", mapping="")
    rows = select(table, "FeatInv's reconstructions", comparison=FEATINV, **inversion)
    agreement = values(
        rows[rows["metric"] == "top1_agreement"], ("backbone", "layer", "manipulation")
    )
    ssim = values(rows[rows["metric"] == "ssim"], ("backbone", "layer", "manipulation"))
    floor = select(table, "the mean image", comparison=MEAN_IMAGE, metric="ssim", **inversion)
    mean_ssim = values(floor, ("backbone", "layer", "manipulation"))
    findings = []
    for backbone in backbones(table):
        layers = sorted({c[1] for c in agreement | ssim if c[0] == backbone}, key=network_order)
        if not layers:
            raise MissingRows(f"no {FEATINV} top1_agreement or ssim of {backbone}")
        cells = sorted(c for c in agreement | ssim if c[:2] == (backbone, layers[-1]))
        for cell in cells:
            lacking = [
                name
                for name, scores in (
                    (f"{FEATINV} top1_agreement", agreement),
                    (f"{FEATINV} ssim", ssim),
                    (f"{MEAN_IMAGE} ssim", mean_ssim),
                )
                if cell not in scores
            ]
            if lacking:
                raise MissingRows(f"no {' or '.join(lacking)} in {' '.join(cell)}")
            where = " ".join(cell)
            findings.append(
                Finding(f"{where} top1_agreement", agreement[cell], ">=", settings.agreement)
            )
            findings.append(
                Finding(f"{where} ssim", ssim[cell], ">", mean_ssim[cell], "mean image")
            )
    return findings


def lens_reach(table: pd.DataFrame, settings: FloorSettings) -> list[Finding]:
    """Floor 5, lens: each held iterative morph's median target probability over the cases at
    its largest budget, for each driving backbone."""
    rows = select(table, "the lens morphs", stage="lens", metric="target_probability", split="test")
    findings = []
    for driver in backbones(rows):
        driven = rows[rows["backbone"] == driver]
        source = driven.loc[driven["comparison"] == "source", "value"]
        note = f"source median {source.median():.4f}" if len(source) else ""
        for method in settings.lens_methods:
            budgets = driven["comparison"].str.extract(
                rf"^{re.escape(method)}_iterative_l2_(\d+(?:\.\d+)?)$", expand=False
            )
            if budgets.isna().all():
                raise MissingRows(f"no {method}_iterative_l2_* target_probability of {driver}")
            largest = budgets.astype(float).max()
            at_largest = driven.loc[budgets.astype(float) == largest, "value"]
            cell = (
                f"{driver} {method}_iterative at L2 {largest:g}, median of {len(at_largest)} cases"
            )
            findings.append(
                Finding(cell, float(np.median(at_largest)), ">", settings.reached, note)
            )
    return findings


def filters_substitution(table: pd.DataFrame, settings: FloorSettings) -> list[Finding]:
    """Floor 5, filters: substitution's mean fidelity above deconvolution's on each held layer
    of each decoded backbone."""
    rows = select(table, "the decoded filters", stage="filters", metric="fidelity", split="test")
    fidelity = values(rows, ("backbone", "layer", "comparison"))
    findings = []
    for backbone in backbones(rows):
        for layer in settings.filter_layers:
            pair = [fidelity.get((backbone, layer, m)) for m in ("substitution", "deconvolution")]
            if None in pair:
                raise MissingRows(
                    f"no substitution and deconvolution fidelity of {backbone} {layer}"
                )
            findings.append(Finding(f"{backbone} {layer}", pair[0], ">", pair[1], "deconvolution"))
    return findings


# --- The report -----------------------------------------------------------------------------------

# Each floor: its name, its check, and whether it compares after with before (else it is held on
# one table at a time).
FLOORS: tuple[tuple[str, Callable[..., list[Finding]], bool], ...] = (
    ("1 classifier test accuracy", classifier_accuracy, False),
    ("2 ridge beats identity where the features change", ridge_beats_identity, False),
    ("3 trained mappings' test cosine against before", trained_against_before, True),
    ("4 FeatInv on the deepest layers", featinv_deepest, False),
    ("5 lens: iterative morphs reach the target", lens_reach, False),
    ("5 filters: substitution beats deconvolution", filters_substitution, False),
)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """A floor's findings on one table (or a pair), or what the table lacked."""

    findings: tuple[Finding, ...] = ()
    missing: str = ""

    @property
    def passed(self) -> bool:
        return not self.missing and all(f.passed for f in self.findings)

    @property
    def verdict(self) -> str:
        return "PASS" if self.passed else "FAIL"

    def detail(self) -> str:
        """How many cells failed and the one of least margin; or what is missing."""
        if self.missing:
            return f"missing rows: {self.missing}"
        cells, failing = len(self.findings), sum(not f.passed for f in self.findings)
        worst = min(self.findings, key=lambda f: f.margin)
        return f"{cells} cell{'s' * (cells != 1)}, {failing} failing; worst {worst}"

    def failing_lines(self) -> list[str]:
        return [f"  FAIL {f}" for f in self.findings if not f.passed]


def outcome(
    check: Callable[..., list[Finding]], *tables: pd.DataFrame, settings: FloorSettings
) -> Outcome:
    """One floor on one table (or before and after); a table without its rows fails it."""
    try:
        return Outcome(tuple(check(*tables, settings)))
    except MissingRows as error:
        return Outcome(missing=str(error))


def report(
    before: pd.DataFrame, after: pd.DataFrame, settings: FloorSettings | None = None
) -> tuple[list[str], bool]:
    """Every floor on `after`; the absolute ones also on `before`, shown but not held.

    Returns:
        Lines to print (one per floor, then its failing cells, then before's verdict of an
        absolute floor) and whether every floor passes.
    """
    settings = settings or FloorSettings()
    lines, passed = [], True
    for name, check, relative in FLOORS:
        tables = (before, after) if relative else (after,)
        result = outcome(check, *tables, settings=settings)
        lines += [f"{result.verdict} floor {name}: {result.detail()}", *result.failing_lines()]
        if not relative:
            shown = outcome(check, before, settings=settings)
            lines.append(f"    before: {shown.verdict} {shown.detail()}")
        passed &= result.passed
    return lines, passed
