"""The generative editors on tiny random pipelines of each class: loading, sizes, seeds, errors."""

import dataclasses

import featlab._compat  # noqa: F401  (defines torchvision op schemas before diffusers)

import numpy as np
import pytest
from tiny_editors import save_tiny_editor

from featlab.manipulate.editors import EDITORS, EditSettings, edit_images, load_editor

# Two random photos of a size that no editor works at (28 and 36 are not multiples of 16).
IMAGES = np.random.default_rng(0).integers(0, 256, (2, 28, 36, 3), dtype=np.uint8)
MASKS = np.zeros(IMAGES.shape[:3], dtype=bool)
MASKS[:, 6:22, 8:28] = True


@dataclasses.dataclass
class Editor:
    settings: EditSettings
    pipeline: object
    first: np.ndarray  # IMAGES[0] edited alone, as image 0 of its set


def edit(editor: Editor, count: int = 1, indices=None, **changes) -> np.ndarray:
    """The first `count` images edited (as images `indices` of their set) with changed settings."""
    settings = dataclasses.replace(editor.settings, **changes)
    masks = MASKS[:count] if settings.editor == "inpaint" else None
    indices = range(count) if indices is None else indices
    return edit_images(editor.pipeline, settings, IMAGES[:count], indices, masks)


@pytest.fixture(scope="module", params=list(EDITORS))
def editor(request, tmp_path_factory) -> Editor:
    """Each tiny editor, saved, loaded from its folder, and its first edit (built once)."""
    folder = save_tiny_editor(request.param, tmp_path_factory.mktemp(request.param))
    settings = EditSettings(
        editor=request.param, model=str(folder), prompt="make the car body bright blue", steps=2
    )
    tiny = Editor(settings, load_editor(settings), np.empty(0))
    tiny.first = edit(tiny)
    return tiny


def test_editor_loads_from_its_folder_and_edits(editor):
    assert type(editor.pipeline).__name__ == EDITORS[editor.settings.editor]
    assert editor.first.shape == IMAGES[:1].shape
    assert editor.first.dtype == np.uint8
    change = np.abs(editor.first.astype(int) - IMAGES[:1]).mean(axis=-1)
    if editor.settings.editor == "inpaint":
        # Repainted inside the mask, the photo's own pixels outside it.
        assert change[:, MASKS[0]].mean() > 1
        assert (change[:, ~MASKS[0]] == 0).all()
    else:
        assert change.mean() > 1


def test_same_seed_gives_the_same_edit(editor):
    np.testing.assert_array_equal(edit(editor), editor.first)


def test_an_edit_does_not_depend_on_its_batch(editor):
    batch = edit(editor, count=2, batch_size=2)
    # Equal up to rounding: a batched forward pass may sum in another order.
    assert np.abs(batch[:1].astype(int) - editor.first).max() <= 1
    assert np.abs(batch[1].astype(int) - editor.first[0]).mean() > 1


def test_seed_and_index_choose_the_edit(editor):
    for other in (edit(editor, seed=43), edit(editor, indices=[5])):
        assert np.abs(other.astype(int) - editor.first).mean() > 0.5


def test_edit_size_is_a_multiple_of_the_pipelines(editor):
    multiple = editor.pipeline.image_processor.config.vae_scale_factor
    with pytest.raises(ValueError, match=r"EditSettings\.edit_size"):
        edit(editor, edit_size=multiple + 4)


def test_masks_are_for_inpaint_only(editor):
    if editor.settings.editor == "inpaint":
        with pytest.raises(ValueError, match="needs masks"):
            edit_images(editor.pipeline, editor.settings, IMAGES, [0, 1])
    else:
        with pytest.raises(ValueError, match="inpaint editor only"):
            edit_images(editor.pipeline, editor.settings, IMAGES, [0, 1], MASKS)


def test_edit_at_another_size_comes_back_at_the_image_size(tmp_path):
    folder = save_tiny_editor("instruct_pix2pix", tmp_path / "editor")
    settings = EditSettings("instruct_pix2pix", str(folder), "make it blue", steps=2, edit_size=64)
    edited = edit_images(load_editor(settings), settings, IMAGES, [0, 1])
    assert edited.shape == IMAGES.shape


def test_uncached_hub_id_offline_says_how_to_get_it():
    # conftest sets HF_HUB_OFFLINE=1, so nothing is fetched.
    settings = EditSettings("qwen_image_edit", "featlab-tests/no-such-editor", "make it blue")
    with pytest.raises(FileNotFoundError, match="featlab-tests/no-such-editor") as error:
        load_editor(settings)
    assert "hf download featlab-tests/no-such-editor" in str(error.value)


def test_missing_local_folder_is_named(tmp_path):
    settings = EditSettings("inpaint", str(tmp_path / "nothing"), "a red car")
    with pytest.raises(FileNotFoundError, match="nothing"):
        load_editor(settings)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("editor", "dall_e"),
        ("model", ""),
        ("prompt", "  "),
        ("steps", 0),
        ("guidance", -1.0),
        ("seed", -1),
        ("batch_size", 0),
        ("edit_size", 0),
        ("precision", "int8"),
        ("device", "tpu"),
        ("offload", "disk"),
    ],
)
def test_bad_settings_name_the_field(field, value):
    settings = {"editor": "inpaint", "model": "some/model", "prompt": "a red car", field: value}
    with pytest.raises(ValueError, match=rf"EditSettings\.{field} "):
        EditSettings(**settings)


def test_offload_needs_a_gpu():
    settings = EditSettings("inpaint", "some/model", "a red car", device="cpu", offload="model")
    with pytest.raises(ValueError, match=r"EditSettings\.offload"):
        load_editor(settings)
