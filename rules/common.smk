# Path and parameter helpers shared by the rule files.
import hashlib
import json
import os
import re
import sys
from pathlib import Path

SRC = Path(workflow.basedir) / "src"
# Snakemake and its jobs import featlab from this checkout, also inside conda environments that do
# not install it. (Set with update(): the envvars lint is for variables a user must provide.)
sys.path.insert(0, str(SRC))
os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [str(SRC), os.getenv("PYTHONPATH")])))

from featlab.geometry import spatial_op_of

# Snakemake compares params in order, so sort every mapping of the validated config: reordering
# keys in a YAML file must rerun nothing.
_sorted = json.loads(json.dumps(config, sort_keys=True))
config.clear()
config.update(_sorted)

RESULTS = f"results/{config['study']}"
ENV = "../envs/featlab.yaml"
MANIPULATIONS = list(config["manipulations"])
BACKBONES = list(config["backbones"])


wildcard_constraints:
    backbone="[^/]+",
    layer="[^/]+",
    mapping="[^/]+",
    manipulation="|".join(map(re.escape, MANIPULATIONS)),
    imageset="|".join(map(re.escape, ["original", *MANIPULATIONS])),


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


def backbone_config(wildcards):
    """The backbone's section of the config, without its training recipe."""
    return {k: v for k, v in config["backbones"][wildcards.backbone].items() if k != "train"}


def trained_weights(wildcards):
    """The pipeline-trained weights a backbone needs, if its weights come from training."""
    if config["backbones"][wildcards.backbone]["weights"] != "train":
        return []
    return f"{RESULTS}/models/{wildcards.backbone}/model.safetensors"


def manipulation_spec(wildcards):
    return config["manipulations"][wildcards.manipulation]


def mappings_for(manipulation):
    """The configured mappings that apply: `spatial` only to geometric manipulations."""
    geometric = spatial_op_of(config["manipulations"][manipulation]) is not None
    return [m for m in config["mappings"] if m != "spatial" or geometric]


def mapping_metrics():
    """Every (backbone, layer, manipulation, mapping) metrics file of the study."""
    return [
        f"{RESULTS}/mappings/{backbone}/{layer}/{manipulation}/{mapping}/metrics.json"
        for backbone in BACKBONES
        for layer in config["backbones"][backbone]["layers"]
        for manipulation in MANIPULATIONS
        for mapping in mappings_for(manipulation)
    ]


def extraction_metrics():
    return [
        f"{RESULTS}/features/{backbone}/{imageset}.metrics.json"
        for backbone in BACKBONES
        for imageset in ["original", *MANIPULATIONS]
    ]
