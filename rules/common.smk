# The study's plan (featlab.study.Study) adapted to Snakemake: the rules read their paths, cells,
# settings and code hashes from `study`, and their wildcard functions from here.
import os
import re
import sys
from pathlib import Path

SRC = Path(workflow.basedir) / "src"
# Snakemake and its jobs import featlab from this checkout, also inside conda environments that do
# not install it. (Set with update(): the envvars lint is for variables a user must provide.)
sys.path.insert(0, str(SRC))
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [str(SRC), os.getenv("PYTHONPATH")])))

from featlab.mapping.fit import BASELINES, CLOSED_FORM
from featlab.mapping.models import TRAINED
from featlab.runs import forget_run, record_run, release_stale_locks
from featlab.study import Study, gpus

# Planned once, with every cross-key check. Cluster jobs parse the Snakefile again: only planning
# stats the data set's files and builds the backbones to check them.
study = Study.plan(config, workflow.basedir, main_process=workflow.is_main_process)
# Snakemake compares params in order: the config's keys are sorted, so reordering keys in a YAML
# file reruns nothing (scripts that read snakemake.config see the same).
config.clear()
config.update(study.config)
ENV = "../envs/featlab.yaml"


def one_of(names):
    """A wildcard constraint matching exactly these names (nothing when there are none)."""
    return "|".join(map(re.escape, names)) or "(?!)"


# Timm layer names contain dots: wildcards match anything but `/`.
wildcard_constraints:
    backbone="[^/]+",
    layer="[^/]+",
    mapping="[^/]+",
    manipulation=one_of(study.manipulations),
    imageset=one_of(study.imagesets),
    shard=r"\d+",
    case=one_of(study.lens_cases),


# The folders of one job's cell, with its wildcards.
MAPPING_LAYER = study.mapping("{backbone}", "{layer}")
MAPPING_GROUP = study.mapping("{backbone}", "{layer}", "{manipulation}")
MAPPING_CELL = f"{MAPPING_GROUP}/{{mapping}}"
# The stores a mapping job of one cell (or of a group of a cell's mappings) reads.
CELL_STORES = dict(
    original=study.features("{backbone}", "original"),
    manipulated=study.features("{backbone}", "{manipulation}"),
    images=study.images("{manipulation}"),
)
INVERSION_CELL = study.inversion("{backbone}", "{layer}", "{manipulation}")
INVERSION_MAPPING = study.inversion("{backbone}", "{layer}", "{manipulation}", "{mapping}")
OPTIMISATION_CELL = study.optimisation("{backbone}", "{layer}", "{manipulation}")
OPTIMISATION_MAPPING = study.optimisation("{backbone}", "{layer}", "{manipulation}", "{mapping}")
EDIT_CELL = study.edit("{backbone}", "{layer}", "{manipulation}")
STRIPS = study.lens_figures("{backbone}")  # a lens driver's frame strips (png) and GIFs (gif)


def reported(path, caption, category, **details):
    """An output shown in the report, described by report/{caption}.rst."""
    return report(path, caption=f"../report/{caption}.rst", category=category, **details)


# Input and params functions of the rules' wildcards.
def backbone_of(wildcards):
    """The backbone's section as a featlab.backbones.BackboneSpec takes it."""
    return study.backbone(wildcards.backbone)


def weights_of(wildcards):
    """The pipeline-made weights of the backbone (train or random); none for hub or file."""
    return study.weights(wildcards.backbone) or []


def accuracy_of(wildcards):
    return study.accuracy_written(wildcards.backbone)


def train_of(wildcards):
    return study.backbone_train(wildcards.backbone)


def seed_of(wildcards):
    return config["backbones"][wildcards.backbone]["seed"]


def extraction_of(wildcards):
    return study.extraction(wildcards.backbone)


def spec_of(wildcards):
    return config["manipulations"][wildcards.manipulation]


def scenes_of(wildcards):
    """The shapes world's scenes, which counterfactuals re-render; none for real photos."""
    return study.scenes() if config["data"]["source"] == "shapes" else []


def edit_shards_of(wildcards):
    return [study.edit_shard(wildcards.manipulation, s) for s in study.edit_shards]


def feature_shards_of(wildcards):
    w = wildcards
    return [study.feature_shard(w.backbone, w.imageset, s) for s in study.extract_shards]


def fit_of(wildcards):
    return study.fit(wildcards.manipulation, wildcards.mapping)


def closed_form_fits_of(wildcards):
    return [study.fit(wildcards.manipulation, m) for m in study.batched("closed_forms")]


def trained_fits_of(wildcards):
    return [study.fit(wildcards.manipulation, m) for m in study.batched("trained")]


def semantic_plan(wildcards):
    return study.layer_plan(wildcards.backbone, wildcards.layer)


def analysis_plan(wildcards):
    return study.layer_plan(wildcards.backbone, wildcards.layer, affine_only=True)


def semantic_inputs(wildcards):
    return study.plan_files(semantic_plan(wildcards))


def analysis_inputs(wildcards):
    return study.plan_files(analysis_plan(wildcards))


def lens_case_of(wildcards):
    return study.lens_cases[wildcards.case]


def inversion_inputs(wildcards):
    """The FeatInv model, stores and backbone weights an inversion of one cell reads."""
    return study.inversion_inputs(wildcards.backbone, wildcards.layer, wildcards.manipulation)


def inversion_map(wildcards):
    """The fitted map an inversion applies; none for the identity and spatial baselines."""
    w = wildcards
    return study.map_file(w.backbone, w.layer, w.manipulation, w.mapping) or []


def reconstructions_of(wildcards):
    return study.reconstructions(wildcards.backbone, wildcards.layer, wildcards.manipulation)


def optimise_baselines_of(wildcards):
    return study.optimise_baselines(wildcards.backbone, wildcards.layer)


def edit_inputs(wildcards):
    """What an edits job of one cell reads: stores, weights, FeatInv model, map_{mapping} files."""
    return study.edit_inputs(wildcards.backbone, wildcards.layer, wildcards.manipulation)


def edit_readers_of(wildcards):
    """The other backbones that read an edits cell's two lenses for transfer, with their specs."""
    return study.edit_readers(wildcards.backbone)
