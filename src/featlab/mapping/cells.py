"""Fit and score the mappings of cells, one per process or many: the workflow's mapping jobs.

A cell is one (backbone, layer, manipulation, mapping). Its job reads the original and
manipulated features of the layer, fits the mapping on the train split (nothing for the
baselines), and writes the fitted map and the scores of every split into the cell's folder. A
job may fit several cells of one (backbone, layer, manipulation) in one process: the process
starts, imports and opens the stores once, and each cell still gets its own files.
"""

import dataclasses

from featlab.io import write_json
from featlab.mapping.fit import (
    BASELINES,
    CLOSED_FORM,
    ClosedFormSettings,
    baseline,
    evaluate,
    fit_closed_form,
    save_affine,
)
from featlab.mapping.models import TRAINED
from featlab.mapping.pairs import open_pair
from featlab.mapping.train import TrainSettings, train_mapping

# The files of a cell's folder, by the kind of its mapping: output name -> file name.
FILES = {
    "baseline": {"metrics": "metrics.json"},
    "closed_form": {"model": "map.safetensors", "metrics": "metrics.json"},
    "trained": {
        "model": "map.safetensors",
        "config": "map.json",
        "history": "history.json",
        "metrics": "metrics.json",
    },
}


# The mappings that one job fits together under featmap.jobs: batched, by the kinds of FILES they hold:
# what needs no training, and the trained ones (which may want a GPU).
GROUPS = {"closed_forms": ("baseline", "closed_form"), "trained": ("trained",)}


def kind_of(mapping: str) -> str:
    """Which of FILES' kinds a mapping is: baseline, closed_form or trained."""
    for kind, names in (
        ("baseline", BASELINES),
        ("closed_form", CLOSED_FORM),
        ("trained", TRAINED),
    ):
        if mapping in names:
            return kind
    raise ValueError(
        f"unknown mapping {mapping!r}; choose one of {BASELINES + CLOSED_FORM + TRAINED}"
    )


@dataclasses.dataclass(frozen=True)
class CellStores:
    """The stores every mapping of one (backbone, layer, manipulation) reads."""

    original: str  # features of the original images (Zarr)
    manipulated: str  # features of the manipulated images (Zarr)
    images: str  # the manipulated image store: splits and masks
    layer: str


@dataclasses.dataclass(frozen=True)
class Fit:
    """One cell's mapping and its settings, as the Study plans them."""

    mapping: str
    settings: dict  # the mapping's hyperparameters (empty for the baselines)
    spatial_op: str | None = None  # applied to the originals first (or, for `spatial`, alone)


def fit_cell(
    stores: CellStores,
    fit: Fit,
    cell: dict,
    outputs: dict[str, str],
    training: dict,
    threads: int = 1,
) -> None:
    """Fit one cell's mapping and write its files.

    Args:
        stores: The stores of the cell's backbone, layer and manipulation.
        fit: The mapping, its settings and the spatial op it applies first.
        cell: The cell's backbone and manipulation (its rows' keys, with the layer).
        outputs: FILES' names of the mapping's kind -> paths.
        training: The trained mappings' recipe (`TrainSettings`' fields; unread otherwise).
        threads: torch threads of a trained mapping.
    """
    kind = kind_of(fit.mapping)
    row = dict(stage="mapping", backbone=cell["backbone"], layer=stores.layer)
    row.update(manipulation=cell["manipulation"], mapping=fit.mapping)
    if kind == "baseline":
        pair = open_pair(stores.original, stores.manipulated, stores.images, stores.layer)
        apply = baseline(fit.mapping, fit.spatial_op)
        write_json(
            outputs["metrics"],
            evaluate(pair, apply, {**row, "comparison": "mapped_vs_manipulated"}),
        )
        return
    if kind == "closed_form":
        settings = ClosedFormSettings(**fit.settings)
        pair = open_pair(*dataclasses.astuple(stores), fit.spatial_op)
        affine = fit_closed_form(pair, fit.mapping, settings)
        config = {
            "mapping": fit.mapping,
            "layer": stores.layer,
            "spatial_op": fit.spatial_op or "",
            **vars(settings),
        }
        save_affine(outputs["model"], affine, config)
        apply = affine.apply_maps
    else:
        settings = TrainSettings(**training, threads=threads)
        pair = open_pair(
            *dataclasses.astuple(stores),
            fit.spatial_op,
            val_fraction=settings.val_fraction,
            seed=settings.seed,
        )
        trained = train_mapping(pair, fit.mapping, fit.settings, settings)
        trained.save(outputs["model"])
        write_json(outputs["history"], trained.history)
        apply = trained.apply_maps
    write_json(outputs["metrics"], evaluate(pair, apply, {**row, "comparison": pair.comparison}))
