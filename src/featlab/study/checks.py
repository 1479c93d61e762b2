"""What the schema cannot say of a config: checks across keys, run once when a study is planned.

Each raises a ValueError whose message starts with the key it is about, before any job runs.
"""

from typing import TYPE_CHECKING

from featlab.backbones import BackboneSpec, check_backbone
from featlab.data.shapes import CLASSES as SHAPES_CLASSES
from featlab.edits.settings import EditSettings as EditsSettings
from featlab.featinv.settings import check_patch_size, resolve_guidance
from featlab.manipulate.spec import check_spec

if TYPE_CHECKING:
    from featlab.study.plan import Study


def check_study(study: "Study", backbones: bool = True) -> None:
    """Every check of a planned study; `backbones` also builds each backbone on the meta device
    (about a second each), which cluster jobs, parsing the workflow again, skip."""
    check_manipulations(study.config)
    if backbones:
        check_backbones(study)
    check_filters(study)
    check_lens(study)
    check_featinv(study)
    check_edits(study)


def check_manipulations(config: dict) -> None:
    """What the schema cannot say of a manipulation (featlab.manipulate.check_spec), and that
    counterfactuals re-render shapes-world scenes, which real photos do not have."""
    for name, spec in config["manipulations"].items():
        try:
            check_spec(spec)
        except ValueError as error:
            raise ValueError(f"manipulations.{name}: {error}") from None
        if spec["kind"] == "counterfactual" and config["data"]["source"] != "shapes":
            raise ValueError(
                f"manipulations.{name}: counterfactual renders need data.source shapes; real "
                "photos are edited by generative editors instead (kind: semantic)"
            )


def check_backbones(study: "Study") -> None:
    """Stop on a model timm lacks, model_args it refuses, or layers that cannot be stored: empty,
    repeated, unknown, a container or not a grid (featlab.backbones.check_backbone: built and run
    on the meta device)."""
    for name in study.backbones:
        spec = BackboneSpec(**study.backbone(name))
        check_backbone(spec, f"backbones.{name}", study.image_side(name))


def _unknown_backbones(study: "Study", key: str, names: list[str]) -> None:
    unknown = sorted(set(names) - set(study.backbones))
    if unknown:
        raise ValueError(f"{key}: {unknown} are not backbones of the study")


def check_filters(study: "Study") -> None:
    _unknown_backbones(study, "filters.backbones", study.config["filters"]["backbones"])


def check_lens(study: "Study") -> None:
    """Stop on a driver that is not a backbone, or a class the shapes world lacks."""
    _unknown_backbones(study, "lens.backbones", study.lens_drivers)
    if study.config["data"]["source"] != "shapes":
        return
    for name, case in study.lens_cases.items():
        for key in ("source", "target"):
            if isinstance(case[key], str) and case[key] not in SHAPES_CLASSES:
                raise ValueError(f"lens.cases {name}: {key} is not one of {SHAPES_CLASSES}")


def check_featinv(study: "Study") -> None:
    """The FeatInv and optimiser layers are stored layers, the inverted manipulations and mappings
    exist, and the model's patch size and the sampler's guidance work (checks a job would make
    only when it runs)."""
    featinv = study.config["featinv"]
    for key, chosen in (
        ("featinv.layers", featinv["layers"]),
        ("featinv.optimise.layers", featinv["optimise"]["layers"]),
    ):
        _stored_layers(study, key, chosen or {})
    for section, key, known in (
        ("invert", "manipulations", study.manipulations),
        ("optimise", "manipulations", study.manipulations),
        ("optimise", "mappings", study.config["mappings"]),
    ):
        unknown = set(featinv[section][key] or []) - set(known)
        if unknown:
            raise ValueError(f"featinv.{section}.{key}: {sorted(unknown)} are not {key}")
    model = featinv["model"]
    check_patch_size(model["base"], model["resolution"], model["patch_size"])
    resolve_guidance(
        model["base"], featinv["sample"]["guidance"], featinv["train"]["prompt_drop_prob"]
    )


def _stored_layers(study: "Study", key: str, chosen: dict[str, list[str]]) -> None:
    """Each backbone -> layers of `chosen` names a stored layer of a backbone of the study."""
    backbones = study.config["backbones"]
    for backbone, layers in chosen.items():
        stored = backbones.get(backbone, {}).get("layers", [])
        unknown = [layer for layer in layers if layer not in stored]
        if backbone not in backbones or unknown:
            raise ValueError(
                f"{key}: {backbone} {unknown or ''} is not a stored backbone layer; "
                f"choose among backbones.{backbone}.layers"
            )


def check_edits(study: "Study") -> None:
    """The edited manipulations exist, the layers are stored, the settings hold, and each cell
    fits at least one of edits.mappings."""
    section = study.config["edits"]
    unknown = sorted(set(section["manipulations"]) - set(study.manipulations))
    if unknown:
        raise ValueError(f"edits.manipulations: {unknown} are not manipulations of the study")
    if not section["manipulations"]:
        return
    _stored_layers(study, "edits.layers", section["layers"] or {})
    EditsSettings(**study.settings("edits"))  # names the key of a bad value
    for (backbone, layer, manipulation), mappings in study.edit_cells().items():
        if not mappings:
            raise ValueError(
                f"edits.mappings: none of {section['mappings']} is fitted on {backbone} {layer} "
                f"{manipulation}; add one to mappings (or featmap.trained_subset)"
            )
