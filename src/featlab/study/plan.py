"""The study's plan: the validated config turned into paths, cells, checks and settings.

A `Study` is built once, when the workflow is parsed, from the config that the schema has
validated and filled in. It owns

- the path scheme: one function per stage folder, and the log and benchmark paths derived from
  the path of what a job makes (`log`, `benchmark`);
- the planned cells: which backbones, layers, manipulations and mappings each stage runs, the
  FeatInv, optimiser and lens cells, and the files every target rule collects;
- every cross-key check, run once at planning, each naming the key it is about;
- each stage's settings, sliced from the config by the fields of that stage's settings dataclass
  (so a key that the stage does not read never reruns it);
- each rule's code hash: its workflow script and the featlab modules that script imports.

`rules/common.smk` adapts it to Snakemake; the library never imports Snakemake.
"""

import dataclasses
import functools
import json
import math
from pathlib import Path
from typing import Any

from featlab import codehash
from featlab.backbones import labels_match_head
from featlab.data.sources import REQUIRED_SPLITS, survey
from featlab.featinv.evaluate import OPTIMISED
from featlab.geometry import spatial_op_of
from featlab.manipulate.spec import EDITED_KINDS
from featlab.mapping.cells import FILES, GROUPS, kind_of
from featlab.mapping.fit import BASELINES
from featlab.mapping.models import AFFINE, TRAINED
from featlab.study.checks import check_study
from featlab.study.paths import StudyPaths
from featlab.study.settings import SETTINGS, settings_of

LAYER_FILES = ("semantic", "analysis")  # per-layer FeatMap files beside the mapping folders


def sorted_config(config: dict) -> dict:
    """The config with every mapping's keys sorted: Snakemake compares params in order, so
    reordering keys in a YAML file must rerun nothing."""
    return json.loads(json.dumps(config, sort_keys=True))


def unlocated(data: dict) -> dict:
    """A data section without where the data set lies (data.folder.root, data.filelist.path): its
    files are tracked by the manifest digest, whose paths are relative to it, so a data set moved
    or copied with its files reruns nothing. Jobs that need the location read it from the config."""
    folder = {k: v for k, v in data["folder"].items() if k != "root"}
    filelist = {k: v for k, v in data["filelist"].items() if k != "path"}
    return {**data, "folder": folder, "filelist": filelist}


def survey_data(data: dict, manifest: bool) -> tuple[int, str | None]:
    """The number of original images, known before any job runs (the shards are planned from it),
    and the manifest digest of a folder's or file list's files (None for the shapes world).

    Args:
        data: The config's data section.
        manifest: Whether to stat the files for their digest (only planning does; cluster jobs
            parse the workflow again).
    """
    # None when the folder or file list is not on this machine; a missing split stops here.
    found = survey(data, REQUIRED_SPLITS, manifest=manifest)
    if data["source"] == "shapes":
        return found.n_images, None
    expected, where = data["n_images"], f"data.{data['source']}"
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


@functools.cache
def gpu_present() -> bool:
    """Whether this machine has a CUDA device (asked once)."""
    import torch

    return torch.cuda.is_available()


def gpus(device: str) -> int:
    """The GPUs a job of a stage with this `device` setting asks for: one for cuda, and one for
    auto where this machine has a GPU (the job will use it)."""
    return int(device == "cuda" or (device == "auto" and gpu_present()))


@dataclasses.dataclass
class Study(StudyPaths):
    """The plan of one study. Build it with `Study.plan`.

    Attributes:
        config: The validated config, keys sorted.
        workflow_dir: The checkout holding workflow_scripts/ and src/.
        n_images: The number of original images.
        manifest: The digest of a folder's or file list's files; None for the shapes world.
    """

    config: dict
    workflow_dir: Path
    n_images: int
    manifest: str | None

    @classmethod
    def plan(cls, config: dict, workflow_dir: Path | str, main_process: bool = True) -> "Study":
        """Plan the study of a validated config and run every cross-key check.

        Args:
            config: The config as the schema validated and filled it.
            workflow_dir: The checkout holding workflow_scripts/ and src/.
            main_process: False in a cluster job, which parses the workflow again: it neither
                stats the data set's files nor builds the backbones to check them.
        """
        config = sorted_config(config)
        n_images, manifest = survey_data(config["data"], manifest=main_process)
        study = cls(config, Path(workflow_dir), n_images, manifest)
        study.check(backbones=main_process)
        return study

    # 1. Paths (featlab.study.paths), and the files of a lens driver's cases.
    def lens_files(self, backbone: str, name: str) -> list[str]:
        """The `name` file of every case of a driver."""
        return [self.lens(backbone, case, name) for case in self.lens_cases]

    # 2. The planned cells.
    @property
    def backbones(self) -> list[str]:
        return list(self.config["backbones"])

    @property
    def manipulations(self) -> list[str]:
        return list(self.config["manipulations"])

    @property
    def imagesets(self) -> list[str]:
        return ["original", *self.manipulations]

    @property
    def edited(self) -> list[str]:
        """Manipulations by generative editors, edited in shards; the others in one job each."""
        kinds = self.config["manipulations"]
        return [name for name in self.manipulations if kinds[name]["kind"] in EDITED_KINDS]

    @property
    def computed(self) -> list[str]:
        return [name for name in self.manipulations if name not in self.edited]

    def layers(self, backbone: str) -> list[str]:
        return self.config["backbones"][backbone]["layers"]

    def backbones_with(self, weights: str) -> list[str]:
        """The backbones whose weights come from `weights` (train, hub, file or random)."""
        return [b for b in self.backbones if self.config["backbones"][b]["weights"] == weights]

    def shards(self, images_per_shard: int) -> list[str]:
        """The shard names of the planned images: 00000, 00001, ..."""
        return [f"{k:05d}" for k in range(math.ceil(self.n_images / images_per_shard))]

    @property
    def extract_shards(self) -> list[str]:
        return self.shards(self.config["extraction"]["images_per_shard"])

    @property
    def edit_shards(self) -> list[str]:
        return self.shards(self.config["editing"]["images_per_shard"])

    def weights(self, backbone: str) -> str | None:
        """The weights file the pipeline makes for a backbone: trained (weights: train) or drawn
        once from its seed (weights: random); None for hub and file weights."""
        if self.config["backbones"][backbone]["weights"] not in ("train", "random"):
            return None
        return self.model(backbone, "model.safetensors")

    def spatial_op(self, manipulation: str) -> str | None:
        return spatial_op_of(self.config["manipulations"][manipulation])

    def trained_here(self, layer: str, manipulation: str) -> bool:
        """Whether featmap.trained_subset lets trained mappings fit this layer and manipulation."""
        subset = self.config["featmap"]["trained_subset"]
        return all(
            subset[key] is None or value in subset[key]
            for key, value in (("layers", layer), ("manipulations", manipulation))
        )

    def mappings_for(self, manipulation: str, layer: str | None = None) -> list[str]:
        """The configured mappings that apply: `spatial` only to geometric manipulations, trained
        ones only where featmap.trained_subset selects."""
        geometric = self.spatial_op(manipulation) is not None
        trained = layer is None or self.trained_here(layer, manipulation)
        return [
            m
            for m in self.config["mappings"]
            if (m != "spatial" or geometric) and (m not in TRAINED or trained)
        ]

    def map_file(self, backbone: str, layer: str, manipulation: str, mapping: str) -> str | None:
        """A fitted mapping's weights; None for the baselines, which have none."""
        if mapping in BASELINES:
            return None
        folder = self.mapping(backbone, layer, manipulation, mapping)
        return self.cell_files(folder, kind_of(mapping))["model"]

    # Mapping jobs: one per cell, or with featmap.jobs one per group of a cell's mappings.
    def batched(self, group: str) -> list[str]:
        """The configured mappings of one of `cells.GROUPS` that a single job fits for each
        (backbone, layer, manipulation) under featmap.jobs; none without it. `spatial` keeps a
        job per cell, as it applies to the geometric manipulations only."""
        if self.config["featmap"]["jobs"] != "batched":
            return []
        kinds = GROUPS[group]
        return [m for m in self.config["mappings"] if m != "spatial" and kind_of(m) in kinds]

    def single(self, kind: str) -> list[str]:
        """The configured mappings of a kind (`cells.FILES`) fitted one cell per job."""
        batched = {m for group in GROUPS for m in self.batched(group)}
        return [m for m in self.config["mappings"] if kind_of(m) == kind and m not in batched]

    def fit(self, manipulation: str, mapping: str) -> dict:
        """A cell's `cells.Fit`: the mapping's settings and the spatial op it applies first
        (the `spatial` baseline: the manipulation's own)."""
        if mapping == "spatial":
            return dict(mapping=mapping, settings={}, spatial_op=self.spatial_op(manipulation))
        spatial_op = self.spatial_first_of(manipulation, mapping)
        return dict(mapping=mapping, settings=self.mapping_settings(mapping), spatial_op=spatial_op)

    @staticmethod
    def cell_files(folder: str, kind: str) -> dict[str, str]:
        """The outputs of one cell's job: `cells.FILES` of its kind in `folder`."""
        return {name: f"{folder}/{file}" for name, file in FILES[kind].items()}

    def group_files(self, folder: str, group: str) -> dict[str, str]:
        """The outputs of a batched job: every cell's files, named `{mapping}_{name}`, in
        `folder`/{mapping}/ (`folder`: the cell's (backbone, layer, manipulation) folder)."""
        return {
            f"{mapping}_{name}": path
            for mapping in self.batched(group)
            for name, path in self.cell_files(f"{folder}/{mapping}", kind_of(mapping)).items()
        }

    def layer_plan(self, backbone: str, layer: str, affine_only: bool = False) -> list[dict]:
        """One entry per (manipulation, mapping) of a backbone's layer, with the files it needs:
        every mapping for semantic consistency, the affine ones for the structure analysis."""
        return [
            dict(
                manipulation=manipulation,
                mapping=mapping,
                features=self.features(backbone, manipulation),
                images=self.images(manipulation),
                map=self.map_file(backbone, layer, manipulation, mapping),
                spatial_op=self.spatial_op(manipulation),
            )
            for manipulation in self.manipulations
            for mapping in self.mappings_for(manipulation, layer)
            if not affine_only or mapping in AFFINE
        ]

    @staticmethod
    def plan_files(plan: list[dict]) -> list[str]:
        """The stores and map files of a plan, once each, as rule inputs."""
        files = [entry[key] for entry in plan for key in ("features", "images", "map")]
        return list(dict.fromkeys(path for path in files if path is not None))

    def filter_layers(self) -> list[tuple[str, str]]:
        """The (backbone, layer) pairs whose neurons are decoded: filters.layers of every backbone
        in filters.backbones, or each backbone's own layers when filters.layers is null."""
        section = self.config["filters"]
        return [
            (backbone, layer)
            for backbone in section["backbones"]
            for layer in section["layers"] or self.layers(backbone)
        ]

    @property
    def lens_cases(self) -> dict[str, dict]:
        """The lens cases by name, {source}_to_{target}_{image} in paths and the table."""
        return {
            f"{case['source']}_to_{case['target']}_{case.get('image', 0)}": case
            for case in self.config["lens"]["cases"]
        }

    @property
    def lens_drivers(self) -> list[str]:
        """The backbones whose gradients drive the morphs: null every backbone, [] none."""
        drivers = self.config["lens"]["backbones"]
        return self.backbones if drivers is None else drivers

    def lens_backbones(self) -> dict[str, dict]:
        """Every backbone's spec: the driver and the classifiers the morphs transfer to."""
        return {name: self.backbone(name) for name in self.backbones}

    def lens_weight_files(self) -> dict[str, str | None]:
        """Each backbone's pipeline-made weights, or None where they come from elsewhere."""
        return {name: self.weights(name) for name in self.backbones}

    def lens_weights(self) -> list[str]:
        """The pipeline-made weights a lens job reads (every backbone's, for transfer)."""
        return [path for path in self.lens_weight_files().values() if path]

    def featinv_layers(self) -> list[tuple[str, str]]:
        """(backbone, layer) pairs that get a FeatInv model: the configured ones, each backbone's
        deepest for null, none for {} (the default)."""
        return self.chosen_layers(self.config["featinv"]["layers"])

    def chosen_layers(self, chosen: dict[str, list[str]] | None) -> list[tuple[str, str]]:
        """(backbone, layer) pairs of a {backbone: [layer, ...]} choice; each backbone's deepest
        layer for null."""
        if chosen is None:
            chosen = {b: self.layers(b)[-1:] for b in self.backbones}
        return [(backbone, layer) for backbone, layers in chosen.items() for layer in layers]

    def optimise_layers(self) -> list[tuple[str, str]]:
        """(backbone, layer) pairs the optimiser inverts: featinv.optimise.layers, which need no
        FeatInv model; the FeatInv layers for null."""
        chosen = self.config["featinv"]["optimise"]["layers"]
        if chosen is None:
            return self.featinv_layers()
        return [(backbone, layer) for backbone, layers in chosen.items() for layer in layers]

    def inversion_cells(
        self, layers: list[tuple[str, str]], section: dict
    ) -> dict[tuple[str, str, str], list[str]]:
        """Every (backbone, layer, manipulation) of `layers` to invert, with the mappings inverted
        there; `section` chooses the manipulations and mappings (null: all of them)."""
        return {
            (backbone, layer, manipulation): [
                m
                for m in self.mappings_for(manipulation, layer)
                if section["mappings"] is None or m in section["mappings"]
            ]
            for backbone, layer in layers
            for manipulation in section["manipulations"] or self.manipulations
        }

    def featinv_cells(self) -> dict[tuple[str, str, str], list[str]]:
        """The cells FeatInv inverts (featinv.invert chooses what)."""
        return self.inversion_cells(self.featinv_layers(), self.config["featinv"]["invert"])

    def optimise_cells(self) -> dict[tuple[str, str, str], list[str]]:
        """The cells the optimiser inverts: featinv.optimise's manipulations and mappings, or
        featinv.invert's where those are null."""
        featinv = self.config["featinv"]
        section = {
            key: featinv["optimise"][key] or featinv["invert"][key]
            for key in ("manipulations", "mappings")
        }
        return self.inversion_cells(self.optimise_layers(), section)

    def optimise_baselines(self, backbone: str, layer: str) -> bool:
        """Whether the optimiser writes the floor and ceiling rows: only where FeatInv does not."""
        return (backbone, layer) not in self.featinv_layers()

    # 3. What the target rules collect.
    def mapping_metrics(self, manipulations: list[str] | None = None) -> list[str]:
        """The metrics file of every mapping cell (of these manipulations, or of all)."""
        return [
            f"{self.mapping(b, layer, manipulation, mapping)}/metrics.json"
            for b in self.backbones
            for layer in self.layers(b)
            for manipulation in (self.manipulations if manipulations is None else manipulations)
            for mapping in self.mappings_for(manipulation, layer)
        ]

    def metrics_files(self) -> list[str]:
        """Every metrics file the table joins: extraction, FeatMap, filters, lens, inversions."""
        extraction = [
            self.features(b, imageset, ".metrics.json")
            for b in self.backbones
            for imageset in self.imagesets
        ]
        cells = self.mapping_metrics()
        layer_files = [
            self.mapping(b, layer, f"{kind}.json")
            for b in self.backbones
            for layer in self.layers(b)
            for kind in LAYER_FILES
        ]
        filters = [f"{self.filters(b, layer)}/metrics.json" for b, layer in self.filter_layers()]
        lens = [
            f"{self.lens(b, case)}/metrics.json"
            for b in self.lens_drivers
            for case in self.lens_cases
        ]
        inversions = []
        for folder, inverted in self.inverters():
            inversions += [f"{folder(*cell)}/metrics.json" for cell in inverted]
            inversions += [
                f"{folder(*cell, mapping)}/metrics.json"
                for cell, mappings in inverted.items()
                for mapping in mappings
            ]
        edits = [self.edit(*cell, "metrics.json") for cell in self.edit_cells()]
        return [*extraction, *cells, *layer_files, *filters, *lens, *inversions, *edits]

    def inverters(self) -> list[tuple]:
        """(folder function, planned cells) of each inverter: FeatInv's, then the optimiser's."""
        return [
            (self.inversion, self.featinv_cells()),
            (self.optimisation, self.optimise_cells()),
        ]

    def featmap_figures(self) -> list[str]:
        """The FeatMap analysis figures, when the study fits the affine map they draw."""
        if self.config["plots"]["rank_mapping"] not in self.config["mappings"]:
            return []
        names = ("relative_cosine", "linear_structure", "rank_curves")
        return [self.figure(name) for name in names]

    def lens_figures(self, driver: str) -> dict[str, list[str]]:
        """A driver's frame strips (PNG) and GIFs, one of each per case."""
        return {
            kind: [self.figure("lens", driver, case, suffix=f".{kind}") for case in self.lens_cases]
            for kind in ("png", "gif")
        }

    def figures(self) -> list[str]:
        """Every figure of the study, drawn from the stored tables and artifacts only."""
        figures = [self.figure("cosine_by_layer"), *self.featmap_figures()]
        figures += [self.figure("filters", b, layer) for b, layer in self.filter_layers()]
        if self.lens_cases and self.lens_drivers:
            for driver in self.lens_drivers:
                figures += [*self.lens_figures(driver)["png"], *self.lens_figures(driver)["gif"]]
            figures.append(self.figure("lens_summary"))
        featinv, optimised = self.featinv_cells(), self.optimise_cells()
        figures += [self.figure("featinv", *cell) for cell in {**featinv, **optimised}]
        figures += [self.figure("inversion_scores")] if featinv else []
        figures += [self.figure("inverters")] if featinv or optimised else []
        return figures + self.edit_figures()

    def pictures(self) -> dict[str, str]:
        """The figures the README shows (featlab.pictures), by name: the first FeatInv cell's
        grid, the first lens driver's first strip and the cosine figure, each where planned."""
        pictures = {}
        if featinv := self.featinv_cells():
            pictures["featinv"] = self.figure("featinv", *next(iter(featinv)))
        if self.lens_cases and self.lens_drivers:
            pictures["lens"] = self.lens_figures(self.lens_drivers[0])["png"][0]
        return {**pictures, "cosine": self.figure("cosine_by_layer")}

    def inversion_inputs(self, backbone: str, layer: str, manipulation: str) -> dict:
        """What an inversion of one cell reads: the FeatInv model, the original and manipulated
        feature and image stores, and the backbone's pipeline-made weights (if any)."""
        return dict(
            model=f"{self.featinv(backbone, layer)}/model",
            original=self.features(backbone, "original"),
            manipulated=self.features(backbone, manipulation),
            original_images=self.images("original"),
            manipulated_images=self.images(manipulation),
            weights=self.weights(backbone) or [],
        )

    def reconstructions(self, backbone: str, layer: str, manipulation: str) -> dict[str, str]:
        """Each inverter's references of one cell and each mapping's reconstructions: keys
        `references` and `{mapping}` for FeatInv, prefixed `optimised_` for the optimiser."""
        cell, files = (backbone, layer, manipulation), {}
        for prefix, (folder, cells) in zip(("", OPTIMISED), self.inverters(), strict=True):
            if cell not in cells:
                continue
            files[f"{prefix}references"] = f"{folder(*cell)}/images.safetensors"
            for mapping in cells[cell]:
                files[prefix + mapping] = f"{folder(*cell, mapping)}/images.safetensors"
        return files

    # 3b. The edits stage: magnified learned edits of chosen cells (featlab.edits).
    def edit_cells(self) -> dict[tuple[str, str, str], list[str]]:
        """Every (backbone, layer, manipulation) whose edits are studied, with the mappings of
        edits.mappings fitted there; none without edits.manipulations (the default)."""
        section = self.config["edits"]
        if not section["manipulations"]:
            return {}
        return {
            (backbone, layer, manipulation): [
                m for m in section["mappings"] if m in self.mappings_for(manipulation, layer)
            ]
            for backbone, layer in self.chosen_layers(section["layers"])
            for manipulation in section["manipulations"]
        }

    def edit_inputs(self, backbone: str, layer: str, manipulation: str) -> dict:
        """What an edits job reads: the stores, the backbone's pipeline-made weights, the layer's
        FeatInv model where it has one (its edits are then inverted too), and map_{mapping}: the
        map of each of the cell's mappings."""
        cell = (backbone, layer, manipulation)
        inverted = (backbone, layer) in self.featinv_layers()
        return dict(
            original=self.features(backbone, "original"),
            manipulated=self.features(backbone, manipulation),
            original_images=self.images("original"),
            manipulated_images=self.images(manipulation),
            weights=self.weights(backbone) or [],
            featinv=f"{self.featinv(backbone, layer)}/model" if inverted else [],
            **{f"map_{m}": self.map_file(*cell, m) for m in self.edit_cells()[cell]},
            **self.edit_reader_inputs(backbone),
        )

    def edit_readers(self, backbone: str) -> dict[str, dict]:
        """The backbones that read an edits cell's two lenses for transfer, with their specs:
        every other backbone whose classes are the data's; none where the edited one's are not
        (it then drives no morph)."""
        if not self.accuracy_written(backbone):
            return {}
        return {
            name: self.backbone(name)
            for name in self.backbones
            if name != backbone and self.accuracy_written(name)
        }

    def edit_reader_inputs(self, backbone: str) -> dict:
        """Each transfer reader's original feature store (whose attributes say how it reads
        images), `reader_store_{name}`, and its pipeline-made weights, `reader_weights_{name}`."""
        inputs = {}
        for name in self.edit_readers(backbone):
            inputs[f"reader_store_{name}"] = self.features(name, "original")
            inputs[f"reader_weights_{name}"] = self.weights(name) or []
        return inputs

    def edit_lens(self) -> dict:
        """The lens section's settings of a morph, for the edits stage's input-space lens: not
        the lens stage's budgets, methods, variants or warp fit (edits.lens_budget sets its one
        budget; the method is the iterative steerable phase)."""
        unused = ("budgets", "methods", "variants", "warp")
        return {k: v for k, v in self.settings("lens").items() if k not in unused}

    def edit_figures(self) -> list[str]:
        """A strip per inverted cell, the two lenses of each inverted cell whose backbone's
        classes are the data's, and the probability against alpha; none without cells."""
        cells = self.edit_cells()
        if not cells:
            return []
        inverted = self.featinv_layers() if self.config["edits"]["invert_images"] else []
        strips = [self.figure("edits", *cell) for cell in cells if cell[:2] in inverted]
        lenses = [
            self.figure("edit_lenses", *cell)
            for cell in cells
            if cell[:2] in inverted and self.accuracy_written(cell[0])
        ]
        return [*strips, *lenses, self.figure("edit_probability")]

    # 4. Settings: each stage's part of the config, sliced by its settings dataclass.
    def settings(self, section: str, name: str | None = None) -> dict:
        """The keys of a config section that its settings dataclass reads (featlab.study.
        settings.SETTINGS), e.g. settings("featinv.sample"); `name` fills the `*` of the sections
        keyed by backbone: settings("backbones.*.train", "cnn")."""
        node: Any = self.config
        for key in section.split("."):
            node = node[name if key == "*" else key]
        return settings_of(SETTINGS[section], node)

    def optimise_invert(self) -> dict:
        """featinv.invert's settings for the optimiser: its own n_images where set."""
        settings = self.settings("featinv.invert")
        n_images = self.config["featinv"]["optimise"]["n_images"]
        return {**settings, "n_images": n_images or settings["n_images"]}

    def backbone(self, name: str) -> dict:
        """The backbone's section as featlab.backbones.BackboneSpec takes it."""
        return self.settings("backbones.*", name)

    def backbone_train(self, name: str) -> dict:
        return self.settings("backbones.*.train", name)

    def extraction(self, backbone: str) -> dict:
        """featlab.extract.ExtractSettings of a backbone: the study's, with the backbone's size."""
        settings = self.settings("extraction")
        size = self.config["backbones"][backbone]["input_size"]
        return {**settings, "input_size": size or settings["input_size"]}

    def mapping_settings(self, mapping: str) -> dict:
        """A mapping's hyperparameters (not spatial_first: see spatial_first_of)."""
        return self.settings(f"mappings.{mapping}")

    def spatial_first_of(self, manipulation: str, mapping: str) -> str | None:
        """The spatial op a mapping applies first: the manipulation's, if it is geometric and the
        mapping's spatial_first is set; else None."""
        if not self.config["mappings"][mapping].get("spatial_first", False):
            return None
        return self.spatial_op(manipulation)

    def analysis(self) -> dict:
        """The structure analysis settings; the standardised space floors channel stds as the
        trained maps do."""
        std_floor = self.config["featmap"]["training"]["std_floor"]
        return {**self.settings("featmap.analysis"), "std_floor": std_floor}

    def accuracy_written(self, backbone: str) -> bool:
        """Whether the backbone's accuracy rows are written: where its head's classes are the
        data's (featlab.backbones.labels_match_head)."""
        section = self.config["backbones"][backbone]
        return labels_match_head(section["weights"], section["labels_match_head"])

    def data_settings(self) -> dict:
        """The data section as it shapes the image store: not where it lies, how many processes
        decode it, or how many images planning expects."""
        data = self.config["data"]
        return unlocated({k: v for k, v in data.items() if k not in ("workers", "n_images")})

    def tracked_config(self) -> dict:
        """The config as params compare it, for provenance: without the data set's location."""
        return {**self.config, "data": unlocated(self.config["data"])}

    def image_side(self, backbone: str) -> int | None:
        """The side of the images a backbone reads, where the config says it (else None: the
        model's pretrained config decides)."""
        data = self.config["data"]
        stored = data["shapes"]["image_size"] if data["source"] == "shapes" else data["image_size"]
        sides = (
            self.config["backbones"][backbone]["input_size"],
            self.config["extraction"]["input_size"],
        )
        return next((side for side in sides if side), stored)

    def code(self, script: str) -> str:
        """The code hash of a workflow script: the script and the featlab modules it imports."""
        path = self.workflow_dir / "workflow_scripts" / f"{script}.py"
        return codehash.code_hash(path, self.workflow_dir / "src")

    # 5. Checks, once at planning: what the schema cannot say.
    def check(self, backbones: bool = True) -> None:
        """Run every cross-key check; `backbones` also builds each backbone on the meta device."""
        check_study(self, backbones)
