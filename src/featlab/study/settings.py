"""Which settings dataclass reads which section of the config.

A stage's params hold the keys of its section that its settings dataclass has as fields, and no
other: a key that the stage does not read (how a study is sharded, which layers a stage covers)
never reruns it. The schema's defaults equal the dataclasses' defaults (tests/test_config.py walks
the whole schema against this table), so a library user and a study get the same settings.
"""

import dataclasses
from collections.abc import Mapping
from typing import Any

from featlab.backbones import BackboneSpec
from featlab.classifier import TrainSettings as ClassifierTrainSettings
from featlab.data.shapes import ShapesSettings
from featlab.edits.settings import EditSettings as EditsSettings
from featlab.extract import ExtractSettings
from featlab.featinv.evaluate import InvertSettings
from featlab.featinv.model import ModelSettings
from featlab.featinv.optimise import OptimiseSettings
from featlab.featinv.sample import SampleSettings
from featlab.featinv.train import TrainSettings as FeatInvTrainSettings
from featlab.filters import FilterSettings
from featlab.lens import LensSettings, WarpSettings
from featlab.manipulate.change import MaskSettings
from featlab.manipulate.editors import EditSettings
from featlab.mapping.analysis import AnalysisSettings
from featlab.mapping.fit import BASELINES, CLOSED_FORM, ClosedFormSettings
from featlab.mapping.models import SETTINGS as TRAINED_SETTINGS
from featlab.mapping.models import NoSettings
from featlab.mapping.semantic import SemanticSettings
from featlab.mapping.train import TrainSettings as MappingTrainSettings
from featlab.plots import PlotSettings

# Config section (dotted; `*` for a name the study chooses) -> the dataclass that reads it.
SETTINGS: dict[str, type] = {
    "data.shapes": ShapesSettings,
    "change_mask": MaskSettings,
    "editing": EditSettings,
    "backbones.*": BackboneSpec,
    "backbones.*.train": ClassifierTrainSettings,
    "extraction": ExtractSettings,
    **{f"mappings.{name}": NoSettings for name in BASELINES},
    **{f"mappings.{name}": ClosedFormSettings for name in CLOSED_FORM},
    **{f"mappings.{name}": cls for name, cls in TRAINED_SETTINGS.items()},
    "featmap.training": MappingTrainSettings,
    "featmap.analysis": AnalysisSettings,
    "featmap.semantic": SemanticSettings,
    "lens": LensSettings,
    "lens.warp": WarpSettings,
    "filters": FilterSettings,
    "featinv.model": ModelSettings,
    "featinv.train": FeatInvTrainSettings,
    "featinv.sample": SampleSettings,
    "featinv.invert": InvertSettings,
    "featinv.optimise": OptimiseSettings,
    "edits": EditsSettings,
    "plots": PlotSettings,
}
# The keys of those sections that plan the study rather than set how a stage runs: the workflow
# reads them, the stage's dataclass does not.
PLANNING_KEYS: dict[str, tuple[str, ...]] = {
    "editing": ("images_per_shard", "mem_mb"),
    "backbones.*": ("train", "input_size", "seed", "labels_match_head"),
    "extraction": ("images_per_shard",),
    **{f"mappings.{name}": ("spatial_first",) for name in (*CLOSED_FORM, *TRAINED_SETTINGS)},
    "lens": ("backbones", "cases"),
    "filters": ("backbones", "layers"),
    "featinv.invert": ("manipulations", "mappings"),
    "featinv.optimise": ("layers", "manipulations", "mappings", "n_images"),
    "edits": ("manipulations", "layers", "mappings"),
}
# The sections that only plan the study (which cells, where the data lie): no dataclass reads them.
PLANNING_SECTIONS = (
    "data",
    "data.folder",
    "data.folder.split_fractions",
    "data.filelist",
    "manipulations.*",  # each kind's parameters, checked by featlab.manipulate.check_spec
    "mappings",  # which mappings run (each one's section is its dataclass's)
    "featmap",
    "featmap.trained_subset",
    "lens.cases[]",
    "featinv",
    "featinv.model.unet",  # ModelSettings.unet, a dict of diffusers arguments
    "featinv.model.noise",  # ModelSettings.noise, likewise
)


def fields_of(cls: type) -> dict[str, dataclasses.Field]:
    return {field.name: field for field in dataclasses.fields(cls)}


def settings_of(cls: type, section: Mapping[str, Any]) -> dict:
    """The keys of a config section that `cls` has as fields."""
    fields = fields_of(cls)
    return {key: value for key, value in section.items() if key in fields}


def default_of(field: dataclasses.Field) -> Any:
    """A field's default as the config would spell it (tuples as lists, dataclasses as dicts);
    dataclasses.MISSING for a required field."""
    if field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        value = field.default
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    if isinstance(value, tuple):
        value = list(value)
    return value
