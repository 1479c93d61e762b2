# Path and parameter helpers shared by the rule files.
import hashlib
import json
import math
import os
import re
import sys
from pathlib import Path
from types import SimpleNamespace

SRC = Path(workflow.basedir) / "src"
# Snakemake and its jobs import featlab from this checkout, also inside conda environments that do
# not install it. (Set with update(): the envvars lint is for variables a user must provide.)
sys.path.insert(0, str(SRC))
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [str(SRC), os.getenv("PYTHONPATH")])))

from featlab.backbones import BackboneSpec, check_backbone, labels_match_head
from featlab.data.shapes import CLASSES as SHAPES_CLASSES
from featlab.data.sources import REQUIRED_SPLITS, survey
from featlab.edits.settings import EditSettings
from featlab.featinv.settings import check_patch_size, resolve_guidance
from featlab.geometry import spatial_op_of
from featlab.manipulate.spec import check_spec
from featlab.runs import forget_run, record_run, release_stale_locks

# Snakemake compares params in order, so sort every mapping of the validated config: reordering
# keys in a YAML file must rerun nothing.
_sorted = json.loads(json.dumps(config, sort_keys=True))
config.clear()
config.update(_sorted)

RESULTS = f"results/{config['study']}"
ENV = "../envs/featlab.yaml"
MANIPULATIONS = list(config["manipulations"])
# Manipulations by generative editors, edited in shards; the others in one job each.
EDITED = [name for name, spec in config["manipulations"].items() if spec["kind"] == "semantic"]
COMPUTED = [name for name in MANIPULATIONS if name not in EDITED]
# The code of each: editing an editor reruns no computed manipulation, and editing a computed
# manipulation no generative edit.
_SHARED = [f"manipulate/{name}" for name in ("__init__", "spec", "change")]
COMPUTED_CODE = [
    *_SHARED,
    *(f"manipulate/{name}" for name in ("core", "geometric", "photometric", "masking", "semantic")),
]
EDIT_CODE = [*_SHARED, "manipulate/editors", "manipulate/generative"]
BACKBONES = list(config["backbones"])
TRAINED_MAPPINGS = ("additive", "linear", "local_linear", "mlp", "cnn", "transformer")


def one_of(names):
    """A wildcard constraint matching exactly these names (nothing when there are none)."""
    return "|".join(map(re.escape, names)) or "(?!)"


wildcard_constraints:
    backbone="[^/]+",
    layer="[^/]+",
    mapping="[^/]+",
    manipulation=one_of(MANIPULATIONS),
    imageset=one_of(["original", *MANIPULATIONS]),
    shard=r"\d+",


def code_hash(*modules):
    """sha256 of featlab modules' source, so that editing the library reruns what used it."""
    digest = hashlib.sha256()
    for module in modules:
        base = SRC / "featlab" / module
        files = sorted(base.rglob("*.py")) if base.is_dir() else [base.with_suffix(".py")]
        for path in files:
            digest.update(path.relative_to(SRC).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def image_store(imageset):
    return f"{RESULTS}/images/{imageset}.zarr"


def features_of(backbone, imageset):
    return f"{RESULTS}/features/{backbone}/{imageset}.zarr"


def shard_store(backbone, imageset, shard):
    """One extraction shard's store; the set's store gathers them (featlab.store)."""
    return f"{RESULTS}/features/{backbone}/{imageset}.shards/{shard}.zarr"


def survey_data():
    """The number of original images, known before any job runs (the shards are planned from it),
    and the manifest digest of a folder's or file list's files (None for the shapes world)."""
    data = config["data"]
    # Cluster jobs parse the Snakefile again: only planning stats the files (featlab.data.manifest).
    # None when the folder or file list is not on this machine; a missing split stops here.
    found = survey(data, REQUIRED_SPLITS, manifest=workflow.is_main_process)
    if data["source"] == "shapes":
        return found.n_images, None
    expected = data["n_images"]
    where = f"data.{data['source']}"
    if found is None and expected is None:
        raise ValueError(
            f"{where} names a folder or file that is not here ({data[data['source']]}); "
            "fix the path, or set data.n_images to plan the study without the data"
        )
    if found is None:
        return expected, None
    if expected is not None and found.n_images != expected:
        raise ValueError(
            f"{where} holds {found.n_images} images but data.n_images says {expected}: is the "
            "data set complete? Fix the data or data.n_images"
        )
    return found.n_images, found.manifest


def shards(images_per_shard):
    """The shard names of the planned images: 00000, 00001, ..."""
    return [f"{k:05d}" for k in range(math.ceil(N_IMAGES / images_per_shard))]


# IMAGE_MANIFEST is a param of the original image store: a changed, added or removed image reruns
# it and everything after it.
N_IMAGES, IMAGE_MANIFEST = survey_data()
SHARDS = shards(config["extraction"]["images_per_shard"])
EDIT_SHARDS = shards(config["editing"]["images_per_shard"])


def edit_shard_store(manipulation, shard):
    """One edit job's image store; the manipulation's image store gathers them."""
    return f"{RESULTS}/images/{manipulation}.shards/{shard}.zarr"


def unlocated(data):
    """A data section without where the data set lies (data.folder.root, data.filelist.path): its
    files are tracked by IMAGE_MANIFEST, whose paths are relative to it, so a data set moved or
    copied with its files reruns nothing. Jobs that need the location read it from the config."""
    folder = {k: v for k, v in data["folder"].items() if k != "root"}
    filelist = {k: v for k, v in data["filelist"].items() if k != "path"}
    return {**data, "folder": folder, "filelist": filelist}


def data_settings():
    """The data section as it shapes the image store (not how many processes decode it)."""
    settings = {k: v for k, v in config["data"].items() if k not in ("workers", "n_images")}
    return unlocated(settings)


def tracked_config():
    """The config as params compare it, for provenance: without the data set's location."""
    return {**config, "data": unlocated(config["data"])}


def shapes_scenes(wildcards):
    """The shapes world's scene parameters, which counterfactual manipulations re-render."""
    if config["data"]["source"] != "shapes":
        return []
    return f"{RESULTS}/images/original.scenes.json"


def check_manipulations():
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


check_manipulations()


def backbone_config(wildcards):
    """The backbone's section of the config as a featlab.backbones.BackboneSpec takes it: without
    its training recipe, input size, seed and statement about its head's classes."""
    section = config["backbones"][wildcards.backbone]
    planning = ("train", "input_size", "seed", "labels_match_head")
    return {k: v for k, v in section.items() if k not in planning}


def accuracy_written(wildcards):
    """Whether the backbone's accuracy rows are written: where its head's classes are the data's
    (featlab.backbones.labels_match_head)."""
    section = config["backbones"][wildcards.backbone]
    return labels_match_head(section["weights"], section["labels_match_head"])


def backbones_with(weights):
    """The backbones whose weights come from `weights` (train, hub, file or random)."""
    return [name for name in BACKBONES if config["backbones"][name]["weights"] == weights]


def image_side(backbone):
    """The side of the images a backbone reads, where the config says it (else None: the model's
    pretrained config decides)."""
    data = config["data"]
    stored = data["shapes"]["image_size"] if data["source"] == "shapes" else data["image_size"]
    sides = (config["backbones"][backbone]["input_size"], config["extraction"]["input_size"])
    return next((side for side in sides if side), stored)


def check_backbones():
    """Stop before any job on a model timm lacks, model_args it refuses, or layers that cannot
    be stored: empty, repeated, unknown, a container or not a grid (featlab.backbones.
    check_backbone: built and run on the meta device, about a second each)."""
    for name in BACKBONES:
        spec = BackboneSpec(**backbone_config(SimpleNamespace(backbone=name)))
        check_backbone(spec, f"backbones.{name}", image_side(name))


if workflow.is_main_process:  # cluster jobs parse the Snakefile again; planning checks once
    check_backbones()


def extraction_settings(wildcards):
    """featlab.extract.ExtractSettings of a backbone: the study's, with the backbone's size."""
    planning = ("images_per_shard",)
    settings = {k: v for k, v in config["extraction"].items() if k not in planning}
    size = config["backbones"][wildcards.backbone]["input_size"]
    return {**settings, "input_size": size or settings["input_size"]}


def trained_weights(wildcards):
    """The weights file the pipeline makes for a backbone: trained (weights: train) or drawn
    once from its seed (weights: random); none for hub and file weights."""
    if config["backbones"][wildcards.backbone]["weights"] not in ("train", "random"):
        return []
    return f"{RESULTS}/models/{wildcards.backbone}/model.safetensors"


def manipulation_spec(wildcards):
    return config["manipulations"][wildcards.manipulation]


def editing_settings():
    """How the editors run (not how the study is sharded for them, nor the jobs' memory)."""
    return {k: v for k, v in config["editing"].items() if k not in ("images_per_shard", "mem_mb")}


def mapping_settings(wildcards):
    """A mapping's hyperparameters, without `spatial_first` (see spatial_first_of)."""
    return {k: v for k, v in config["mappings"][wildcards.mapping].items() if k != "spatial_first"}


def spatial_first_of(wildcards):
    """The spatial op a mapping applies first: the manipulation's, if it is geometric and the
    mapping's spatial_first is set; else None."""
    if not config["mappings"][wildcards.mapping].get("spatial_first", False):
        return None
    return spatial_op_of(config["manipulations"][wildcards.manipulation])


def trained_here(layer, manipulation):
    """Whether featmap.trained_subset lets trained mappings fit this layer and manipulation."""
    subset = config["featmap"]["trained_subset"]
    return all(
        subset[key] is None or value in subset[key]
        for key, value in (("layers", layer), ("manipulations", manipulation))
    )


def mappings_for(manipulation, layer=None):
    """The configured mappings that apply: `spatial` only to geometric manipulations, trained
    ones only where featmap.trained_subset selects."""
    geometric = spatial_op_of(config["manipulations"][manipulation]) is not None
    trained = layer is None or trained_here(layer, manipulation)
    return [
        m
        for m in config["mappings"]
        if (m != "spatial" or geometric) and (m not in TRAINED_MAPPINGS or trained)
    ]


def mapping_metrics():
    """Every (backbone, layer, manipulation, mapping) metrics file of the study, and each
    layer's semantic-consistency and linear-structure analysis files."""
    return [
        f"{RESULTS}/mappings/{backbone}/{layer}/{manipulation}/{mapping}/metrics.json"
        for backbone in BACKBONES
        for layer in config["backbones"][backbone]["layers"]
        for manipulation in MANIPULATIONS
        for mapping in mappings_for(manipulation, layer)
    ] + [
        f"{RESULTS}/mappings/{backbone}/{layer}/{kind}.json"
        for backbone in BACKBONES
        for layer in config["backbones"][backbone]["layers"]
        for kind in ("semantic", "analysis")
    ]


def extraction_metrics():
    return [
        f"{RESULTS}/features/{backbone}/{imageset}.metrics.json"
        for backbone in BACKBONES
        for imageset in ["original", *MANIPULATIONS]
    ]


def featmap_figures():
    """The FeatMap analysis figures, when the study fits the affine map they draw."""
    if config["plots"].get("rank_mapping", "ridge") not in config["mappings"]:
        return []
    return rules.plot_featmap.output


# FeatMap: what the per-layer analysis and semantic-consistency jobs read.
AFFINE_MAPPINGS = ("ridge", "procrustes", "ridge_relative", "procrustes_relative", "linear")


def map_file(backbone, layer, manipulation, mapping):
    """A fitted mapping's weights; None for the baselines, which have none."""
    if mapping in ("identity", "spatial"):
        return None
    return f"{RESULTS}/mappings/{backbone}/{layer}/{manipulation}/{mapping}/map.safetensors"


def layer_plan(wildcards, only=None):
    """One entry per (manipulation, mapping) of a backbone's layer, with the files it needs."""
    backbone, layer = wildcards.backbone, wildcards.layer
    return [
        dict(
            manipulation=manipulation,
            mapping=mapping,
            features=features_of(backbone, manipulation),
            images=image_store(manipulation),
            map=map_file(backbone, layer, manipulation, mapping),
            spatial_op=spatial_op_of(config["manipulations"][manipulation]),
        )
        for manipulation in MANIPULATIONS
        for mapping in mappings_for(manipulation, layer)
        if only is None or mapping in only
    ]


def semantic_plan(wildcards):
    return layer_plan(wildcards)


def analysis_plan(wildcards):
    return layer_plan(wildcards, only=AFFINE_MAPPINGS)


def plan_files(plan):
    """The stores and map files of a plan, once each, as rule inputs."""
    files = [entry[key] for entry in plan for key in ("features", "images", "map")]
    return list(dict.fromkeys(path for path in files if path is not None))


def semantic_inputs(wildcards):
    return plan_files(semantic_plan(wildcards))


def analysis_inputs(wildcards):
    return plan_files(analysis_plan(wildcards))


# Filter decoding: the layers filters selects, and their files.
def filter_layers():
    """The (backbone, layer) pairs whose neurons are decoded: filters.layers of every backbone
    in filters.backbones, or each backbone's own layers when filters.layers is null."""
    unknown = sorted(set(config["filters"]["backbones"]) - set(BACKBONES))
    if unknown:
        raise ValueError(f"filters.backbones: {unknown} are not backbones of the study")
    return [
        (backbone, layer)
        for backbone in config["filters"]["backbones"]
        for layer in config["filters"]["layers"] or config["backbones"][backbone]["layers"]
    ]


def filter_metrics():
    return [f"{RESULTS}/filters/{b}/{layer}/metrics.json" for b, layer in filter_layers()]


def filter_figures():
    return [f"{RESULTS}/figures/filters/{b}/{layer}.png" for b, layer in filter_layers()]


def filter_settings():
    """The decoding settings: filters without the choice of backbones and layers."""
    return {k: v for k, v in config["filters"].items() if k not in ("backbones", "layers")}


# Steerable lens: cases are named {source}_to_{target}_{image} in paths and the table.
LENS_CASES = {
    f"{case['source']}_to_{case['target']}_{case.get('image', 0)}": case
    for case in config["lens"]["cases"]
}
# null: every backbone drives; [] none (as no cases do).
LENS_DRIVERS = BACKBONES if config["lens"]["backbones"] is None else config["lens"]["backbones"]


def check_lens_config():
    """Stop before any job on a driver that is not a backbone or a class the data set lacks."""
    unknown = set(LENS_DRIVERS) - set(BACKBONES)
    if unknown:
        raise ValueError(f"lens.backbones: {sorted(unknown)} are not backbones of the study")
    for name, case in LENS_CASES.items():
        for key in ("source", "target"):
            if (
                config["data"]["source"] == "shapes"
                and isinstance(case[key], str)
                and case[key] not in SHAPES_CLASSES
            ):
                raise ValueError(f"lens.cases {name}: {key} is not one of {SHAPES_CLASSES}")


def lens_settings():
    """How the morphs are made and scored: the lens section without the cases and drivers."""
    return {k: v for k, v in config["lens"].items() if k not in ("backbones", "cases")}


def lens_case(wildcards):
    return LENS_CASES[wildcards.case]


def lens_backbones():
    """Every backbone's config (the driver and the transfer classifiers), without `train`."""
    return {name: backbone_config(SimpleNamespace(backbone=name)) for name in BACKBONES}


def lens_weight_files():
    """Each backbone's pipeline-made weights, or None where its weights come from elsewhere."""
    files = {name: trained_weights(SimpleNamespace(backbone=name)) for name in BACKBONES}
    return {name: path or None for name, path in files.items()}


def lens_case_files(kind):
    """The `kind` file of every case of a driver ({backbone} left as a wildcard)."""
    return expand(f"{RESULTS}/lens/{{{{backbone}}}}/{{case}}/{kind}", case=LENS_CASES)


def lens_metrics():
    return expand(
        f"{RESULTS}/lens/{{backbone}}/{{case}}/metrics.json", backbone=LENS_DRIVERS, case=LENS_CASES
    )


def lens_figures():
    """Every driver's frame strips and GIFs, and the summary figure; none without cases."""
    if not LENS_CASES or not LENS_DRIVERS:
        return []
    return [*expand(rules.lens_strips.output, backbone=LENS_DRIVERS), *rules.plot_lens.output]


# FeatInv: which layers get a model, which (manipulation, mapping) are inverted, and their files.
FEATINV = config["featinv"]
FEATINV_CODE = code_hash(
    "featinv", "backbones", "store", "devices", "data", "metrics", "tables", "io"
)


def featinv_model():
    """featinv.model, after the checks a job would make only when it runs: the patch size, and
    whether the sampler's guidance reads a branch the training draws."""
    model = FEATINV["model"]
    check_patch_size(model["base"], model["resolution"], model["patch_size"])
    resolve_guidance(
        model["base"], FEATINV["sample"]["guidance"], FEATINV["train"]["prompt_drop_prob"]
    )
    return model


def featinv_layers():
    """(backbone, layer) pairs that get a FeatInv model: the configured ones, each backbone's
    deepest for null, none for {} (the default: a study without a featinv section has none)."""
    return chosen_layers(FEATINV["layers"], "featinv.layers")


def chosen_layers(chosen, key):
    """(backbone, layer) pairs of a {backbone: [layer, ...]} choice at config key `key`; each
    backbone's deepest layer for null."""
    if chosen is None:
        chosen = {b: config["backbones"][b]["layers"][-1:] for b in BACKBONES}
    for backbone, layers in chosen.items():
        stored = config["backbones"].get(backbone, {}).get("layers", [])
        unknown = [layer for layer in layers if layer not in stored]
        if backbone not in config["backbones"] or unknown:
            raise ValueError(
                f"{key}: {backbone} {unknown or ''} is not a stored backbone layer; "
                f"choose among backbones.{backbone}.layers"
            )
    return [(backbone, layer) for backbone, layers in chosen.items() for layer in layers]


def featinv_cells():
    """Every (backbone, layer, manipulation) to invert, with the mappings inverted there."""
    wanted = FEATINV["invert"]
    unknown = set(wanted["manipulations"] or []) - set(MANIPULATIONS)
    if unknown:
        raise ValueError(f"featinv.invert.manipulations: {sorted(unknown)} are not manipulations")
    return {
        (backbone, layer, manipulation): [
            m
            for m in mappings_for(manipulation, layer)
            if wanted["mappings"] is None or m in wanted["mappings"]
        ]
        for backbone, layer in featinv_layers()
        for manipulation in wanted["manipulations"] or MANIPULATIONS
    }


def invert_settings():
    """How inversions are made and scored: featinv.invert without the choice of what to invert."""
    return {k: v for k, v in FEATINV["invert"].items() if k not in ("manipulations", "mappings")}


def inversion_dir(backbone, layer, manipulation, mapping):
    return f"{RESULTS}/inversions/{backbone}/{layer}/{manipulation}/{mapping}"


def inversion_metrics():
    """Every inversion's metrics: the references of each cell, and each mapping inverted there."""
    cells = featinv_cells()
    references = [f"{RESULTS}/inversions/{b}/{layer}/{m}/metrics.json" for b, layer, m in cells]
    mapped = [
        f"{inversion_dir(*cell, mapping)}/metrics.json"
        for cell, mappings in cells.items()
        for mapping in mappings
    ]
    return references + mapped


def inversion_figures():
    """A reconstruction grid per inverted (backbone, layer, manipulation), and the scores figure."""
    cells = list(featinv_cells())
    if not cells:
        return []
    grids = [f"{RESULTS}/figures/featinv/{'/'.join(cell)}.png" for cell in cells]
    return [*grids, f"{RESULTS}/figures/inversion_scores.png"]


def cell_reconstructions(wildcards):
    """The references of one (backbone, layer, manipulation) and each mapping's reconstructions."""
    w = wildcards
    cell = (w.backbone, w.layer, w.manipulation)
    files = {"references": f"{RESULTS}/inversions/{'/'.join(cell)}/images.safetensors"}
    for mapping in featinv_cells()[cell]:
        files[mapping] = f"{inversion_dir(*cell, mapping)}/images.safetensors"
    return files


def inversion_map(wildcards):
    """The fitted map an inversion applies; none for the identity and spatial baselines."""
    w = wildcards
    return map_file(w.backbone, w.layer, w.manipulation, w.mapping) or []


# Edits: which (backbone, layer, manipulation) cells magnify their mappings' edits, and files.
EDITS = config["edits"]


def edit_settings():
    """How edits are made and read: the edits section without the choice of cells."""
    return {k: v for k, v in EDITS.items() if k not in ("manipulations", "layers", "mappings")}


def edit_cells():
    """Every (backbone, layer, manipulation) whose edits are studied, with the mappings (of
    edits.mappings) fitted there; none without edits.manipulations (the default)."""
    unknown = sorted(set(EDITS["manipulations"]) - set(MANIPULATIONS))
    if unknown:
        raise ValueError(f"edits.manipulations: {unknown} are not manipulations of the study")
    if not EDITS["manipulations"]:
        return {}
    EditSettings(**edit_settings())  # names the key of a bad value
    cells = {}
    for backbone, layer in chosen_layers(EDITS["layers"], "edits.layers"):
        for manipulation in EDITS["manipulations"]:
            fitted = mappings_for(manipulation, layer)
            mappings = [m for m in EDITS["mappings"] if m in fitted]
            if not mappings:
                raise ValueError(
                    f"edits.mappings: none of {EDITS['mappings']} is fitted on {backbone} "
                    f"{layer} {manipulation}; add one to mappings (or featmap.trained_subset)"
                )
            cells[(backbone, layer, manipulation)] = mappings
    return cells


EDIT_CELLS = edit_cells()


def edit_mappings(wildcards):
    return EDIT_CELLS[(wildcards.backbone, wildcards.layer, wildcards.manipulation)]


def edit_maps(wildcards):
    """The map files of the cell's mappings, in edit_mappings' order."""
    w = wildcards
    return [map_file(w.backbone, w.layer, w.manipulation, m) for m in edit_mappings(w)]


def edit_featinv(wildcards):
    """The layer's FeatInv model, where it has one; its edits are then inverted too."""
    if (wildcards.backbone, wildcards.layer) not in featinv_layers():
        return []
    return f"{RESULTS}/featinv/{wildcards.backbone}/{wildcards.layer}/model"


def edit_metrics():
    return [f"{RESULTS}/edits/{'/'.join(cell)}/metrics.json" for cell in EDIT_CELLS]


def edit_figures():
    """A strip per inverted cell, and the probability against alpha; none without cells."""
    if not EDIT_CELLS:
        return []
    inverted = featinv_layers() if EDITS["invert_images"] else []
    strips = [
        f"{RESULTS}/figures/edits/{'/'.join(cell)}.png"
        for cell in EDIT_CELLS
        if cell[:2] in inverted
    ]
    return [*strips, f"{RESULTS}/figures/edit_probability.png"]
