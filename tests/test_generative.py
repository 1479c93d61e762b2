"""Semantic manipulations through image stores: edit shards, their gathering, dropped edits."""

import featlab._compat  # noqa: F401  (defines torchvision op schemas before diffusers)

import numpy as np
import pytest
from tiny_editors import save_tiny_editor

from featlab.data.images import ImageSet, ImageStore, ImageStoreWriter, write_image_store
from featlab.manipulate.generative import (
    changed_fractions,
    edit_shard,
    gather_edits,
    kept_edits,
    region_masks,
)

N = 7
SPLITS = np.array(["train"] * 4 + ["test"] * 3)


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """An original image store of 7 photos and a tiny InstructPix2Pix editor beside it."""
    folder = tmp_path_factory.mktemp("study")
    images = np.random.default_rng(0).integers(0, 256, (N, 24, 24, 3), dtype=np.uint8)
    ids = np.array([f"photo{i}" for i in range(N)])
    write_image_store(folder / "original.zarr", ImageSet(images, np.arange(N) % 2, SPLITS, ids))
    editor = save_tiny_editor("instruct_pix2pix", folder / "editor")
    spec = {"kind": "semantic", "editor": "instruct_pix2pix", "model": str(editor)}
    return {"dir": folder, "spec": {**spec, "prompt": "make it blue", "steps": 2}}


def edit(study, name: str, image_range: tuple[int, int], **changes):
    path = study["dir"] / f"{name}.zarr"
    spec = {**study["spec"], **changes}
    editing = {"batch_size": 2, "device": "cpu"}
    edit_shard(ImageStore(study["dir"] / "original.zarr"), path, spec, editing, image_range)
    return path


def test_shards_gather_into_the_edit_of_the_whole_set(study):
    whole = ImageStore(edit(study, "whole", (0, N)))
    # Other shard boundaries and batches: each image keeps its seed (spec seed, image index).
    shards = [edit(study, "first", (0, 3)), edit(study, "second", (3, N))]
    gather_edits(study["dir"] / "gathered.zarr", shards)
    gathered = ImageStore(study["dir"] / "gathered.zarr")
    np.testing.assert_array_equal(gathered.images[:], whole.images[:])
    np.testing.assert_array_equal(gathered.masks[:], whole.masks[:])
    np.testing.assert_array_equal(gathered.splits, SPLITS)
    np.testing.assert_array_equal(gathered.labels, np.arange(N) % 2)
    assert gathered.attrs["manipulation"]["prompt"] == "make it blue"
    assert gathered.masks[:].any()  # the random editor changes the photos
    original = ImageStore(study["dir"] / "original.zarr")
    assert not np.array_equal(gathered.images[:], original.images[:])


def test_gathering_refuses_shards_out_of_order(study):
    shards = [edit(study, "late", (3, N)), edit(study, "early", (0, 3))]
    with pytest.raises(ValueError, match="expected from 0"):
        gather_edits(study["dir"] / "wrong.zarr", shards)
    assert not (study["dir"] / "wrong.zarr").exists()


def test_filtered_edits_stay_in_place_but_leave_every_split(study):
    # A changed fraction of 24 x 24 pixels is k / 576, never within [0.9999, 0.99995]: with these
    # bounds every edit is dropped, with [0, 1] none is.
    dropped = ImageStore(edit(study, "dropped", (0, N), filter=_bounds(0.9999, 0.99995)))
    assert len(dropped) == N
    assert not dropped.kept.any()
    assert [entry["image_id"] for entry in dropped.attrs["dropped"]] == [
        f"photo{i}" for i in range(N)
    ]
    assert len(dropped.indices("train")) == len(dropped.indices("test")) == 0
    kept = ImageStore(edit(study, "kept", (0, N), filter=_bounds(0.0, 1.0)))
    assert kept.kept.all()
    assert kept.attrs["dropped"] == []
    np.testing.assert_array_equal(kept.indices("test"), [4, 5, 6])


def test_a_failed_edit_leaves_no_store(study):
    with pytest.raises(ValueError, match="outside"):
        edit(study, "beyond", (5, N + 2))
    with pytest.raises(FileNotFoundError, match="no/such/editor"):
        edit(study, "missing", (0, 2), model=str(study["dir"] / "no/such/editor"))
    assert not (study["dir"] / "beyond.zarr").exists()
    assert not (study["dir"] / "missing.zarr").exists()


def test_kept_edits_keep_changed_fractions_within_the_bounds():
    masks = np.zeros((3, 10, 10), bool)
    masks[1, :1, :5] = True  # 5% changed
    masks[2, :] = True  # all changed
    changed = changed_fractions(masks)
    np.testing.assert_allclose(changed, [0, 0.05, 1])
    np.testing.assert_array_equal(kept_edits(changed, None), [True, True, True])
    np.testing.assert_array_equal(kept_edits(changed, _bounds(0.01, 0.9)), [False, True, False])


def test_region_masks_cover_the_box_in_fractions_of_the_image():
    masks = region_masks([0.25, 0.5, 0.75, 1.0], (8, 16), 2)
    assert masks.shape == (2, 8, 16)
    expected = np.zeros((8, 16), bool)
    expected[2:6, 8:16] = True
    np.testing.assert_array_equal(masks[1], expected)


def test_an_image_store_without_dropped_images_keeps_all(tmp_path):
    images = np.zeros((3, 4, 4, 3), np.uint8)
    with ImageStoreWriter(tmp_path / "s.zarr", SPLITS[2:5], np.array(list("abc")), (4, 4)) as w:
        w.append(images[:2], np.zeros(2))
        w.append(images[2:], np.zeros(1), kept=np.array([False]))
    store = ImageStore(tmp_path / "s.zarr")
    np.testing.assert_array_equal(store.kept, [True, True, False])
    np.testing.assert_array_equal(store.indices("train"), [0, 1])
    np.testing.assert_array_equal(store.indices("test"), [])


def _bounds(low: float, high: float) -> dict:
    return {"min_changed": low, "max_changed": high}
