"""Fit and score the mappings of cells, one per process or many: the workflow's mapping jobs.

A cell is one (backbone, layer, manipulation, mapping). Its job reads the original and
manipulated features of the layer, fits the mapping on the train split (nothing for the
baselines), and writes the fitted map and the scores of every split into the cell's folder. A
job may fit several cells of one (backbone, layer, manipulation) in one process: the process
starts, imports and opens the stores once, and each cell still gets its own files.
"""

import dataclasses
import functools

from featlab.data.images import ImageStore
from featlab.io import write_json
from featlab.mapping.fit import (
    BASELINES,
    CLOSED_FORM,
    TRAINED,
    ClosedFormSettings,
    baseline,
    evaluate,
    fit_closed_form,
    save_affine,
)
from featlab.mapping.pairs import FeaturePair, pair_of
from featlab.store import FeatureStore

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


# The mappings that one job fits together under `featmap.jobs: batched`, by the kinds of FILES
# they hold: what needs no training, and the trained ones (which may want a GPU).
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


@dataclasses.dataclass
class CellStores:
    """The stores every mapping of one (backbone, layer, manipulation) reads, opened once.

    The layer's original and manipulated features are held in memory (as stored) where each
    takes at most `hold_gb`: a trained mapping reads its pairs several times (statistics, train
    and val, each split's scores), and a job of several mappings reads them for each.
    """

    original: str  # features of the original images (Zarr)
    manipulated: str  # features of the manipulated images (Zarr)
    images: str  # the manipulated image store: splits and masks
    layer: str
    hold_gb: float = 1.0

    @functools.cached_property
    def opened(self) -> tuple[FeatureStore, FeatureStore, ImageStore]:
        """The original and manipulated feature stores and the image store."""
        features = FeatureStore(self.original), FeatureStore(self.manipulated)
        for store in features:
            if self.layer in store.layers:  # else pair_of says which store lacks it
                store.hold(self.layer, self.hold_gb * 2**30)
        return (*features, ImageStore(self.images))

    def pair(self, spatial_op: str | None, val_fraction: float = 0.0, seed: int = 0) -> FeaturePair:
        """The layer's FeaturePair with a spatial op first (or None) and a val split carved."""
        return pair_of(*self.opened, self.layer, spatial_op, val_fraction, seed)


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
        pair = stores.pair(None)
        apply = baseline(fit.mapping, fit.spatial_op)
        write_json(
            outputs["metrics"],
            evaluate(pair, apply, {**row, "comparison": "mapped_vs_manipulated"}),
        )
        return
    if kind == "closed_form":
        settings = ClosedFormSettings(**fit.settings)
        pair = stores.pair(fit.spatial_op)
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
        # here: torch, which a job fitting only baselines and closed forms never imports
        from featlab.mapping.train import TrainSettings, train_mapping

        settings = TrainSettings(**training, threads=threads)
        pair = stores.pair(fit.spatial_op, settings.val_fraction, settings.seed)
        trained = train_mapping(pair, fit.mapping, fit.settings, settings)
        trained.save(outputs["model"])
        write_json(outputs["history"], trained.history)
        apply = trained.apply_maps
    write_json(outputs["metrics"], evaluate(pair, apply, {**row, "comparison": pair.comparison}))
