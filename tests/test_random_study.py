"""A real-photo study with a random-weights backbone (issue 25): one network per study.

The folder's test photos are grey, so `grayscale` leaves them unchanged and its identity cosine on
the test split must be exactly 1: features of the same image through the same network. Two runs
of the same config give the same table, byte for byte.
"""

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from tiny_study import copy_workflow, snakemake

from featlab.backbones import sha256_of
from featlab.io import read_json
from featlab.store import FeatureStore

pytestmark = pytest.mark.slow

CONFIG = {
    "study": "photos",
    "data": {"source": "folder", "folder": {"root": "photos"}, "image_size": 32},
    "manipulations": {"grayscale": {"kind": "grayscale"}},
    "backbones": {
        "cnn": {
            "model": "resnet18",
            "model_args": {"channels": [4, 4, 8, 8], "stem_width": 4},
            "weights": "random",
            "seed": 3,
            "layers": ["layer1"],
        }
    },
    "mappings": {"identity": {}, "ridge": {"gamma": 1.0}},
    "extraction": {"batch_size": 4, "images_per_shard": 6},
}


def write_photos(root):
    """Colour photos in train (grayscale changes them), grey photos in test (it does not)."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 4), ("test", 3)):
        for label in ("cat", "dog"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
                if split == "test":
                    pixels[:] = pixels[..., :1]
                Image.fromarray(pixels).save(folder / f"{i}.png")


def run_study(workdir):
    """The study in a fresh copy of the workflow; its table."""
    copy_workflow(workdir)
    write_photos(workdir / "photos")
    (workdir / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    snakemake(workdir)
    return workdir / "results/photos"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return [run_study(tmp_path_factory.mktemp(f"run{k}")) for k in range(2)]


def test_two_runs_give_the_same_table(runs):
    first, second = ((results / "tables/metrics.csv").read_bytes() for results in runs)
    assert first == second


def test_an_unchanged_image_has_identity_cosine_one(runs):
    table = pd.read_csv(runs[0] / "tables/metrics.csv")
    identity = table.query(
        "stage == 'mapping' and mapping == 'identity' and metric == 'cosine_median'"
    ).set_index(["layer", "split"])["value"]
    assert identity.loc[("layer1", "test")] == pytest.approx(1.0, abs=1e-6)
    assert identity.loc[("layer1", "train")] < 0.999  # the colour photos did change


def test_every_store_records_the_one_set_of_weights(runs):
    results = runs[0]
    weights = sha256_of(results / "models/cnn/model.safetensors")
    for imageset in ("original", "grayscale"):
        assert FeatureStore(results / f"features/cnn/{imageset}.zarr").attrs["weights_sha256"] == (
            weights
        )
    assert read_json(results / "provenance.json")["weights_sha256"] == {"cnn": weights}
    assert weights == sha256_of(runs[1] / "models/cnn/model.safetensors")


def test_a_random_head_writes_no_accuracy_but_agreement(runs):
    """The random head's 1000 classes are not the folder's two: no accuracy rows."""
    table = pd.read_csv(runs[0] / "tables/metrics.csv")
    assert not table["metric"].str.endswith("_accuracy").any()
    assert {"top1_agreement", "jsd", "entropy"} <= set(table["metric"])


def test_stages_left_out_of_the_config_do_not_run(runs):
    """No featinv, lens or filters section: none of those stages runs."""
    table = pd.read_csv(runs[0] / "tables/metrics.csv")
    assert set(table["stage"]) == {"mapping", "analysis"}
    for stage in ("featinv", "inversions", "lens", "filters"):
        assert not (runs[0] / stage).exists()
