"""The README's pictures (featlab.pictures): which figures, shrunk how, and a clear stop when the
study has not drawn them."""

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from snakemake.utils import validate

from featlab.pictures import make_pictures
from featlab.study import Study

REPO = Path(__file__).resolve().parents[1]
TINY = yaml.safe_load((REPO / "tests" / "data" / "tiny.yaml").read_text())


def _plan(edit=None) -> Study:
    config = copy.deepcopy(TINY)
    if edit is not None:
        edit(config)
    validate(config, str(REPO / "schemas" / "config.schema.yaml"))
    return Study.plan(config, REPO, main_process=False)


def test_pictures_are_figures_the_study_draws():
    study = _plan()
    pictures = study.pictures()
    assert list(pictures) == ["featinv", "lens", "cosine"]
    assert set(pictures.values()) <= set(study.figures())
    assert pictures["featinv"] == study.figure("featinv", *next(iter(study.featinv_cells())))

    def no_lens_or_featinv(config):
        config["lens"]["cases"] = []
        config["featinv"]["layers"] = {}

    assert list(_plan(no_lens_or_featinv).pictures()) == ["cosine"]


def _draw(path: Path, size: tuple[int, int], seed: int) -> None:
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path)


def test_pictures_shrink_wide_figures_and_keep_small_ones(tmp_path):
    study = _plan()
    sizes = {"featinv": (1200, 600), "lens": (300, 90), "cosine": (1440, 1080)}
    for seed, (name, path) in enumerate(study.pictures().items()):
        _draw(tmp_path / path, sizes[name], seed)
    written = make_pictures(study, tmp_path, tmp_path / "pictures", width=600)
    shrunk = {name: Image.open(path).size for name, path in written.items()}
    assert shrunk == {"featinv": (600, 300), "lens": (300, 90), "cosine": (600, 450)}
    # a figure narrower than the width is copied pixel for pixel
    source = tmp_path / study.pictures()["lens"]
    assert np.array_equal(np.asarray(Image.open(written["lens"])), np.asarray(Image.open(source)))


def test_a_missing_figure_names_itself_and_writes_nothing(tmp_path):
    study = _plan()
    pictures = study.pictures()
    for name in ("featinv", "lens"):
        _draw(tmp_path / pictures[name], (100, 50), 0)
    with pytest.raises(FileNotFoundError, match=r"cosine_by_layer\.png.*make demo"):
        make_pictures(study, tmp_path, tmp_path / "pictures", width=600)
    assert not (tmp_path / "pictures").exists()
