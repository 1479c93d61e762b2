"""Bad inputs (issue 9, part 1): each is answered by a message that names the file or config key
and what to do, a non-zero exit where the workflow meets it, and no output.

Every input is tried where it first meets the code: the workflow's planning (dry runs of the real
Snakefile), a job (runs of the Snakefile on a tiny study, one workflow copy shared by the module),
or the library function that the job calls. What test_sources, test_backbones, test_manipulate and
test_workflow already try (truncated and empty files, text named .png, a bomb read alone, the
first ten config errors, ...) is not repeated here.
"""

import io
import os
import re
import struct
import subprocess
import zlib
from pathlib import Path

import featlab._compat  # noqa: F401  (defines torchvision op schemas before timm)

import huggingface_hub.constants
import numpy as np
import pytest
import yaml
import zarr
from PIL import Image
from tiny_study import REPO, SNAKEMAKE, TINY, copy_workflow, planned_jobs, snakemake

from featlab.backbones import BackboneSpec, build_backbone, check_backbone, save_backbone
from featlab.data.images import ImageSet, ImageStore, write_image_store
from featlab.data.sources import UnreadableImage, count_images, list_folder, prepare_images
from featlab.manipulate import check_spec, manipulate_store
from featlab.mapping.fit import ClosedFormSettings, baseline, evaluate, fit_closed_form
from featlab.mapping.pairs import open_pair
from featlab.mapping.train import TrainSettings, train_mapping
from featlab.store import FeatureStoreWriter

TINY_RESNET = {"model": "resnet18", "model_args": {"channels": [4, 4, 8, 8], "stem_width": 4}}


def written(path: Path) -> list[str]:
    """What a failed write left at `path`: the path itself, or hidden `.NAME.tmp-PID` entries."""
    if not path.parent.is_dir():
        return []
    return sorted(p.name for p in path.parent.iterdir() if p.name.lstrip(".").startswith(path.name))


def noise(seed: int, size: tuple[int, int] = (24, 20)) -> Image.Image:
    """A random RGB image (width, height = size): it compresses badly, so corruption bites."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def photo_folder(root: Path, layout: dict[str, int]) -> Path:
    """layout: relative folder -> number of random PNGs to write there."""
    for seed, (folder, n) in enumerate(layout.items()):
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            noise(10 * seed + i).save(root / folder / f"{i}.png")
    return root


# Images, read by prepare_images (the prepare_images job)


def _encoded(image: Image.Image, format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    return buffer.getvalue()


def _overwrite(data: bytes, after: bytes, offset: int, fill: bytes) -> bytes:
    """`data` with `fill` written `offset` bytes after the first `after`."""
    start = data.index(after) + len(after) + offset
    return data[:start] + fill + data[start + len(fill) :]


def _flip_bit(data: bytes, after: bytes, offset: int) -> bytes:
    position = data.index(after) + len(after) + offset
    return data[:position] + bytes([data[position] ^ 0x01]) + data[position + 1 :]


PNG, JPEG = _encoded(noise(1, (64, 64)), "PNG"), _encoded(noise(2, (64, 64)), "JPEG")
RANDOM_BYTES = np.random.default_rng(3).integers(0, 256, 20, dtype=np.uint8).tobytes()
# Bytes damaged inside a file whose length and layout are intact. PNG's zlib stream and chunk
# CRCs catch damage to its pixel data. A JPEG has no checksum: libjpeg stops on damage to its
# tables and markers, but damage inside the entropy-coded pixel data decodes to a garbled image
# with a libjpeg warning that Pillow does not pass on, so it cannot be caught here.
CORRUPT = {
    "zeroed_pixel_data.png": _overwrite(PNG, b"IDAT", len(PNG) // 3, bytes(32)),
    "one_bit_flipped.png": _flip_bit(PNG, b"IDAT", 200),
    "damaged_huffman_table.jpg": _overwrite(JPEG, b"\xff\xc4", 2, RANDOM_BYTES),
    "damaged_frame_header.jpg": _overwrite(JPEG, b"\xff\xc0", 2, RANDOM_BYTES),
    "markers_in_pixel_data.jpg": _overwrite(JPEG, b"\xff\xda", 200, b"\xff" * 64),
}


def _with_bad_file(root: Path, name: str, data: bytes) -> list:
    """A split-folder set of good photos and one bad file in train/cat; its entries."""
    photo_folder(root, {"train/cat": 2, "test/cat": 1})
    (root / "train" / "cat" / name).write_bytes(data)
    return list_folder(root)[0]


@pytest.mark.parametrize("name", list(CORRUPT))
def test_corrupt_images_stop_naming_the_file(tmp_path, name):
    entries = _with_bad_file(tmp_path / "photos", name, CORRUPT[name])
    store = tmp_path / "original.zarr"
    with pytest.raises(UnreadableImage, match=rf"{re.escape(name)}: cannot read.*on_error: skip"):
        prepare_images(entries, store, 16)
    assert written(store) == []


def test_float_pixels_stop_naming_the_file(tmp_path):
    """Pillow would clip 32-bit float pixels to 0-255: an image scaled to [0, 1] stored black."""
    root = tmp_path / "photos"
    photo_folder(root, {"train/cat": 1, "test/cat": 1})
    Image.fromarray(np.full((20, 24), 0.5, np.float32)).save(root / "train" / "cat" / "f.tif")
    with pytest.raises(UnreadableImage, match=r"f\.tif: cannot read the image.*32-bit floats"):
        prepare_images(list_folder(root)[0], tmp_path / "original.zarr", 16)
    assert written(tmp_path / "original.zarr") == []


def test_a_decompression_bomb_stops_the_store_naming_the_file(tmp_path, monkeypatch):
    entries = _with_bad_file(tmp_path / "photos", "huge.png", _encoded(noise(4, (40, 40)), "PNG"))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 600)  # 40 x 40 is more than twice that
    with pytest.raises(UnreadableImage, match=r"huge\.png: cannot read.*DecompressionBombError"):
        prepare_images(entries, tmp_path / "original.zarr", 16)  # the good ones are 24 x 20
    assert written(tmp_path / "original.zarr") == []


def _png48(path: Path, rgb: tuple[int, int, int]) -> None:
    """A 2 x 2 PNG of 16 bits per channel (Pillow cannot write one): one uniform colour."""
    row = b"\x00" + np.array([rgb, rgb], dtype=">u2").tobytes()  # filter byte, then the pixels

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", 2, 2, 16, 2, 0, 0, 0)  # 16-bit truecolour
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(row * 2))
        + chunk(b"IEND", b"")
    )


def _odd(path: Path, kind: str) -> tuple[int, int, int]:
    """Write a uniform image of an odd kind; the RGB colour the store must hold."""
    if kind == "rgb48.png":
        _png48(path, (0xABCD, 0x1234, 0x5678))
        return (0xAB, 0x12, 0x56)  # the high bytes
    if kind == "grey16.tif":
        Image.fromarray(np.full((20, 24), 0xABCD, np.uint16)).save(path)
        return (0xAB,) * 3
    if kind == "grey.jpg":
        Image.new("L", (24, 20), 77).save(path, quality=95)
        return (77,) * 3
    if kind == "bilevel.png":
        Image.new("1", (24, 20), 1).save(path)
        return (255,) * 3
    # Half-transparent red on white.
    Image.new("RGBA", (24, 20), (255, 0, 0, 128)).save(path)
    return (255, 127, 127)


@pytest.mark.parametrize(
    "kind", ["rgb48.png", "grey16.tif", "grey.jpg", "bilevel.png", "half_transparent.png"]
)
def test_odd_images_are_stored_as_rgb(tmp_path, kind):
    root = photo_folder(tmp_path / "photos", {"test/cat": 1})
    (root / "train" / "cat").mkdir(parents=True)
    expected = _odd(root / "train" / "cat" / kind, kind)
    prepare_images(list_folder(root)[0], tmp_path / "original.zarr", 16)
    stored = ImageStore(tmp_path / "original.zarr")
    assert stored.images.shape == (2, 16, 16, 3)
    first = stored.images[0].astype(int)  # train comes first
    assert np.abs(first - np.array(expected)).max() <= 2


@pytest.mark.parametrize("on_error", ["stop", "skip"])
def test_a_tiny_image_is_refused_rather_than_upscaled(tmp_path, on_error):
    """A 1x1 tracking pixel would be upscaled into a 16 px image of one colour (issue 25)."""
    root = photo_folder(tmp_path / "photos", {"train/cat": 2, "test/cat": 1})
    noise(5, (1, 1)).save(root / "train" / "cat" / "pixel.png")
    store = tmp_path / "original.zarr"
    if on_error == "stop":
        message = r"pixel\.png: .*1x1 pixels, under data\.min_side"
        with pytest.raises(UnreadableImage, match=message):
            prepare_images(list_folder(root)[0], store, 16, min_side=16)
        assert written(store) == []
        return
    summary = prepare_images(list_folder(root)[0], store, 16, on_error="skip", min_side=16)
    assert [Path(s["path"]).name for s in summary["skipped"]] == ["pixel.png"]
    assert len(ImageStore(store)) == 3


# Data sets and splits


def test_a_data_set_without_test_images_stops_before_decoding(tmp_path):
    root = photo_folder(tmp_path / "photos", {"train/cat": 2, "train/dog": 1})
    (root / "train" / "dog" / "broken.png").write_bytes(b"never decoded")
    with pytest.raises(ValueError, match=r"no test images.*root/test/\{class\}/"):
        prepare_images(list_folder(root)[0], tmp_path / "original.zarr", 16)
    assert written(tmp_path / "original.zarr") == []


def test_a_split_left_empty_by_skipped_images_stops(tmp_path):
    root = photo_folder(tmp_path / "photos", {"train/cat": 2})
    (root / "test" / "cat").mkdir(parents=True)
    (root / "test" / "cat" / "only.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"after leaving out 1 unreadable images.*no test images"):
        prepare_images(list_folder(root)[0], tmp_path / "original.zarr", 16, on_error="skip")
    assert written(tmp_path / "original.zarr") == []


def test_planning_can_require_the_splits(tmp_path):
    """count_images(..., required_splits) is how planning (featlab.study) can stop early."""
    (tmp_path / "list.csv").write_text("path,label,split\na.png,0,train\nb.png,1,val\n")
    data = {"source": "filelist", "filelist": {"path": str(tmp_path / "list.csv")}}
    assert count_images(data) == 2
    with pytest.raises(ValueError, match="no test images"):
        count_images(data, required_splits=("train", "test"))


# Backbones


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"model": "resnet_nine"}, r"backbones\.cnn\.model: timm has no model 'resnet_nine'"),
        ({"model": "resnet18.nope"}, r"backbones\.cnn\.model: .*tag \(nope\).*list_pretrained"),
        ({**TINY_RESNET, "model_args": {"channel": [4]}}, r"backbones\.cnn\.model_args: .*channel"),
        ({**TINY_RESNET, "layers": ["layer9"]}, r"cnn\.layers: ResNet has no .*'layer9'.*layer2"),
        ({**TINY_RESNET, "layers": ["stages.1"]}, r"cnn\.layers: ResNet has no .*'stages\.1'"),
    ],
    ids=[
        "unknown_model",
        "unknown_tag",
        "unknown_model_arg",
        "unknown_layer",
        "other_models_layer",
    ],
)
def test_planning_checks_a_backbone_without_building_it(section, message):
    spec = BackboneSpec(**{"layers": ["layer2"], **section})
    with pytest.raises(ValueError, match=message):
        check_backbone(spec, "backbones.cnn")


RESNET_LAYERS = r"choose .*\['act1', 'layer1', 'layer2', 'layer3', 'layer4'\]"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({**TINY_RESNET, "layers": ["layer2", ""]}, r"cnn\.layers: an empty layer name.*layer2"),
        ({**TINY_RESNET, "layers": ["layer2", "layer2"]}, r"cnn\.layers: \['layer2'\] named more"),
        ({**TINY_RESNET, "layers": ["global_pool"]}, r"'global_pool' does not output a grid"),
        ({**TINY_RESNET, "layers": ["fc"]}, r"cnn\.layers: 'fc' does not output a grid"),
        (
            {
                "model": "vit_small_patch16_dinov3",
                "model_args": {"embed_dim": 16, "depth": 2, "num_heads": 2, "patch_size": 8},
                "layers": ["blocks"],
            },
            r"cnn\.layers: 'blocks' \(ModuleList\) is not called.*e\.g\. blocks\.0",
        ),
    ],
    ids=["empty_name", "repeated_layer", "pooling", "head", "container"],
)
def test_planning_refuses_layers_that_cannot_be_stored(section, message):
    """Issue 25: each of these passed planning and failed late (or never) in the jobs."""
    with pytest.raises(ValueError, match=message):
        check_backbone(BackboneSpec(**section), "backbones.cnn", 32)
    if "resnet" in section["model"] and section["layers"] != ["layer2", "layer2"]:
        with pytest.raises(ValueError, match=RESNET_LAYERS):
            check_backbone(BackboneSpec(**section), "backbones.cnn", 32)


def test_every_shipped_backbone_passes_the_planning_check():
    """The check refuses no real config: the default study, the tiny one and the presets."""
    configs = [REPO / "config.yaml", TINY, *sorted((REPO / "configs").glob("*.yaml"))]
    for path in configs:
        for name, section in yaml.safe_load(path.read_text())["backbones"].items():
            keys = ("model", "layers", "weights", "weights_path", "hub_id", "model_args")
            spec = BackboneSpec(**{key: section[key] for key in keys if key in section})
            check_backbone(spec, f"{path.name}: backbones.{name}")


@pytest.mark.parametrize("model", ["resnet18", "resnet18.tv_in1k"])
def test_missing_hub_weights_say_which_repository_to_download(tmp_path, monkeypatch, model):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    spec = BackboneSpec(layers=("layer2",), weights="hub", **TINY_RESNET | {"model": model})
    repository = {"resnet18": "timm/resnet18.a1_in1k", "resnet18.tv_in1k": "timm/resnet18.tv_in1k"}
    with pytest.raises(FileNotFoundError, match=f"`hf download {repository[model]}`"):
        build_backbone(spec)


def _weights_file(folder: Path, kind: str) -> Path:
    if kind == "wider.safetensors":  # the same architecture at other widths
        widths = {"channels": [8, 8, 16, 16], "stem_width": 8}
        wider = BackboneSpec(model="resnet18", layers=("layer2",), model_args=widths)
        save_backbone(build_backbone(wider), wider, folder / kind, {})
    elif kind == "text.safetensors":
        (folder / kind).write_text("not weights")
    else:
        (folder / kind).write_bytes(b"PK\x03\x04 not a checkpoint")
    return folder / kind


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("wider.safetensors", "does not fit timm model 'resnet18'.*another architecture"),
        ("text.safetensors", "is not a readable safetensors file"),
        ("broken.pth", r"does not load with torch\.load\(weights_only=True\)"),
    ],
    ids=["other_widths", "text", "broken_checkpoint"],
)
def test_a_weights_file_that_does_not_fit_is_named(tmp_path, kind, message):
    path = _weights_file(tmp_path, kind)
    spec = BackboneSpec(layers=("layer2",), weights="file", weights_path=str(path), **TINY_RESNET)
    with pytest.raises(ValueError, match=rf"weights file {re.escape(str(path))} {message}"):
        build_backbone(spec)


# Feature stores given to a fit


N_IMAGES, SPLITS = 12, ["train"] * 8 + ["test"] * 4
STORE_ATTRS = {
    "model": "resnet18",
    "spec": {"model": "resnet18", "layers": ["layer1"], "model_args": {}},
    "weights_sha256": "a" * 64,
    "preprocessing": {"mean": [0.5] * 3, "std": [0.2] * 3, "input_size": 32},
}


def _feature_store(path: Path, shape=(4, 2, 2), n=N_IMAGES, layer="layer1", **attrs) -> str:
    features = np.random.default_rng(len(str(path))).normal(size=(n, *shape)).astype(np.float32)
    with FeatureStoreWriter(
        path, n, {layer: shape}, 2, "float32", attrs={**STORE_ATTRS, **attrs}
    ) as writer:
        writer.append({layer: features, "logits": np.zeros((n, 2), np.float32)})
    return str(path)


def _image_store(path: Path, n: int = N_IMAGES) -> str:
    images = np.random.default_rng(0).integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    splits = np.array((SPLITS * 2)[:n])
    write_image_store(path, ImageSet(images, np.zeros(n, int), splits, np.arange(n).astype(str)))
    return str(path)


MISMATCHES = {
    "other_model": ({"model": "vit_tiny_patch16_224"}, "different backbones.*model resnet18"),
    "other_model_args": (
        {"spec": {**STORE_ATTRS["spec"], "model_args": {"stem_width": 8}}},
        "different backbones.*spec",
    ),
    "other_weights": ({"weights_sha256": "b" * 64}, "different backbones.*weights_sha256"),
    "other_input_size": (
        {"preprocessing": {**STORE_ATTRS["preprocessing"], "input_size": 64}},
        "different backbones.*preprocessing",
    ),
    "other_channels": ({"shape": (8, 2, 2)}, r"layer1: .* holds \(12, 4, 2, 2\) but .*\(12, 8"),
    "other_grid": ({"shape": (4, 3, 3)}, r"holds \(12, 4, 2, 2\) but .* holds \(12, 4, 3, 3\)"),
    "other_layer": ({"layer": "layer2"}, r"manipulated\.zarr has no layer 'layer1'"),
    "other_image_set": ({"images": 10}, r"images\.zarr holds 10 images but .* the features of 12"),
}


@pytest.mark.parametrize("case", list(MISMATCHES))
def test_stores_of_another_backbone_or_shape_stop_the_fit(tmp_path, case):
    change, message = MISMATCHES[case]
    change = dict(change)
    images = _image_store(tmp_path / "images.zarr", change.pop("images", N_IMAGES))
    original = _feature_store(tmp_path / "original.zarr")
    manipulated = _feature_store(tmp_path / "manipulated.zarr", **change)
    # The closed-form fits and baselines open a pair with the store's splits; trained mappings
    # open one with validation images carved out of train.
    with pytest.raises(ValueError, match=message):
        open_pair(original, manipulated, images, "layer1")
    with pytest.raises(ValueError, match=message):
        open_pair(original, manipulated, images, "layer1", val_fraction=0.25)


def _poison(store: str, image: int, value: float) -> None:
    """Write one NaN or Inf into a store (its writer refuses them, as extraction does)."""
    zarr.open_array(f"{store}/layer1", mode="r+")[image, 1, 0, 0] = value


def _fit(mapping: str, original: str, manipulated: str, images: str) -> None:
    """What the fit_closed_form, train_mapping and evaluate_baseline jobs do with the stores."""
    if mapping == "identity":
        pair = open_pair(original, manipulated, images, "layer1")
        evaluate(pair, baseline("identity", None), {"stage": "mapping", "mapping": "identity"})
    elif mapping == "linear":
        view = open_pair(original, manipulated, images, "layer1", val_fraction=0.25)
        settings = TrainSettings(epochs=1, batch_size=4, device="cpu", val_fraction=0.25)
        train_mapping(view, "linear", {}, settings)
    else:
        fit_closed_form(
            open_pair(original, manipulated, images, "layer1"), mapping, ClosedFormSettings()
        )


@pytest.mark.parametrize(
    ("mapping", "side", "image", "value"),
    [
        ("ridge", "manipulated", 3, np.nan),
        ("procrustes", "original", 5, np.inf),
        ("linear", "original", 2, np.nan),
        ("linear", "manipulated", 6, -np.inf),
        ("identity", "manipulated", 10, np.nan),  # a test image: the baseline's scores
    ],
)
def test_nan_or_inf_features_stop_the_fit_naming_store_and_layer(
    tmp_path, mapping, side, image, value
):
    stores = {
        name: _feature_store(tmp_path / f"{name}.zarr") for name in ("original", "manipulated")
    }
    _poison(stores[side], image, value)
    message = rf"{side}\.zarr, layer layer1: NaN or Inf features at image {image}; delete"
    with pytest.raises(ValueError, match=message):
        _fit(mapping, stores["original"], stores["manipulated"], _image_store(tmp_path / "i.zarr"))


# Manipulations that change nothing


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "hue_shift", "shift": 0},
        {"kind": "hue_shift", "shift": -512},
        {"kind": "gaussian_noise", "sigma": 0, "seed": 0},
    ],
    ids=["hue_shift_0", "hue_shift_-512", "noise_sigma_0"],
)
def test_parameters_that_change_nothing_are_refused(spec):
    with pytest.raises(ValueError, match=rf"{spec['kind']}: .* changes nothing"):
        check_spec(spec)
    assert check_spec(spec, allow_no_op=True) == spec  # one batch may be left as it is


def _grey_store(path: Path, colour: bool = False) -> ImageStore:
    """Grey images (hue and grayscale leave them as they are); the last one in colour if asked."""
    levels = np.linspace(0, 255, N_IMAGES).astype(np.uint8)
    images = np.repeat(levels[:, None, None, None], 8 * 8 * 3).reshape(N_IMAGES, 8, 8, 3)
    if colour:
        images[-1] = np.asarray(noise(0, (8, 8)))
    labels, ids = np.zeros(N_IMAGES, int), np.arange(N_IMAGES).astype(str)
    write_image_store(path, ImageSet(images.copy(), labels, np.array(SPLITS), ids))
    return ImageStore(path)


@pytest.mark.parametrize(
    "spec", [{"kind": "grayscale"}, {"kind": "hue_shift", "shift": 60}], ids=["grayscale", "hue"]
)
def test_a_manipulation_that_leaves_every_image_unchanged_writes_nothing(tmp_path, spec):
    original = _grey_store(tmp_path / "original.zarr")
    target = tmp_path / "same.zarr"
    with pytest.raises(ValueError, match=rf"same\.zarr: .*{spec['kind']}.* leaves all 12 images"):
        manipulate_store(original, target, spec, block_images=5)
    assert written(target) == []
    # One changed image is enough: the set is a manipulation.
    manipulate_store(_grey_store(tmp_path / "colour.zarr", colour=True), target, spec)
    assert len(ImageStore(target)) == N_IMAGES


# The workflow: planning (dry runs) and jobs


def _plan(workdir: Path, config: dict) -> str:
    """A dry run of the real Snakefile that must stop before any job; its output."""
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    command = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--cores", "1"]
    command += ["--configfile", "config.yaml", "--dry-run"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True)
    assert result.returncode != 0
    assert not (workdir / "results").exists()
    return result.stdout + result.stderr


def _tiny(edit) -> dict:
    config = yaml.safe_load(TINY.read_text())
    edit(config)
    return config


@pytest.mark.slow
@pytest.mark.parametrize(
    ("edit", "fragments"),
    [
        (lambda c: c["extraction"].update(batch_size="16"), ["['extraction']['batch_size']"]),
        (lambda c: c["backbones"]["cnn"].update(weigths="random"), ["'weigths' was unexpected"]),
        (lambda c: c["mappings"]["ridge"].update(gamma="high"), ["['mappings']['ridge']['gamma']"]),
        (lambda c: c["data"].update(on_error="ignore"), ["['data']['on_error']", "'stop'"]),
        (lambda c: c["data"]["shapes"].update(n_tset=4), ["'n_tset' was unexpected"]),
        (lambda c: c["manipulations"]["rot90"].update(angle="90"), ["['rot90']['angle']"]),
        (lambda c: c["featmap"]["training"].update(epochs=0), ["['training']['epochs']"]),
        (lambda c: c.update(backbones=["cnn"]), ["is not of type 'object'", "['backbones']"]),
    ],
    ids=[
        "string_for_integer",
        "misspelt_backbone_key",
        "string_for_number",
        "value_not_in_enum",
        "misspelt_data_key",
        "string_for_angle",
        "below_minimum",
        "list_for_mapping",
    ],
)
def test_config_errors_stop_planning_naming_the_key(tmp_path, edit, fragments):
    output = _plan(tmp_path, _tiny(edit))
    assert "Error validating config file" in output
    for fragment in fragments:
        assert fragment in output


@pytest.mark.slow
@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"kind": "hue_shift", "shift": 256}, "manipulations.same: hue_shift: shift 256"),
        ({"kind": "gaussian_noise", "sigma": 0, "seed": 0}, "manipulations.same: gaussian_noise"),
    ],
    ids=["hue_shift_256", "noise_sigma_0"],
)
def test_a_manipulation_that_changes_nothing_stops_planning(tmp_path, spec, message):
    output = _plan(tmp_path, _tiny(lambda c: c["manipulations"].update(same=spec)))
    assert message in output
    assert "changes nothing" in output


def _folder_study(study: str, root: str) -> dict:
    return {
        "study": study,
        "data": {"source": "folder", "folder": {"root": root}, "image_size": 16},
        "manipulations": {"flip": {"kind": "flip", "axis": "horizontal"}},
        "backbones": {"cnn": {**TINY_RESNET, "layers": ["layer2"]}},
    }


@pytest.mark.slow
@pytest.mark.parametrize("source", ["folder", "filelist"])
def test_an_empty_data_set_stops_planning(tmp_path, source):
    (tmp_path / "photos" / "cat").mkdir(parents=True)
    (tmp_path / "photos" / "cat" / "notes.txt").write_text("no images here")
    (tmp_path / "list.csv").write_text("path,label,split\n")
    config = _folder_study("empty", "photos")
    if source == "filelist":
        config["data"] = {"source": "filelist", "filelist": {"path": "list.csv"}, "image_size": 16}
    output = _plan(tmp_path, config)
    expected = "photos holds no images" if source == "folder" else "list.csv lists no images"
    assert expected in output


@pytest.mark.slow
@pytest.mark.parametrize("layers", [["layer2", ""], ["layer2", "layer2"], ["global_pool"]])
def test_layers_that_cannot_be_stored_stop_planning(tmp_path, layers):
    photo_folder(tmp_path / "photos", {"train/cat": 2, "test/cat": 1})
    config = _folder_study("layers", "photos")
    config["backbones"]["cnn"]["layers"] = layers
    output = _plan(tmp_path, config)
    assert "backbones.cnn.layers: " in output
    assert "//" not in output  # an empty name no longer reaches the paths


@pytest.mark.slow
def test_a_number_yaml_reads_as_a_string_is_named_with_its_spelling(tmp_path):
    """PyYAML reads 1e-3 as a string; the message says to write 1.0e-3, in a few lines."""
    config = _tiny(lambda c: c["featmap"]["training"].update(lr="1e-3"))
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config).replace("'1e-3'", "1e-3"))
    command = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--cores", "1"]
    command += ["--configfile", "config.yaml", "--dry-run"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "config['featmap']['training']['lr']: '1e-3' is not of type 'number'" in output
    assert "write 1.0e-3" in output
    assert "exclusiveMinimum" not in output  # not the schema fragment
    assert len(output.splitlines()) < 10


def _planned_rules(workdir: Path, config: dict) -> set[str]:
    """The rules a dry run of `config` would run."""
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    return {job["rule"] for job in planned_jobs(workdir)}


@pytest.mark.slow
def test_every_optional_stage_has_an_off_switch(tmp_path):
    """Issue 25: featinv.layers {} still trained FeatInv on every backbone's deepest layer."""
    copy_workflow(tmp_path)
    optional = {
        "train_featinv",
        "invert_featinv",
        "optimise_mapping",
        "lens",
        "decode_filters",
        "edit_features",
    }
    assert optional <= _planned_rules(tmp_path, _tiny(lambda c: c["lens"].update(backbones=None)))

    def off(config):
        config["featinv"]["layers"] = {}
        config["featinv"]["optimise"]["layers"] = {}
        config["lens"]["backbones"] = []
        config["filters"]["backbones"] = []
        config["edits"]["manipulations"] = []

    planned = _planned_rules(tmp_path, _tiny(off))
    assert not planned & {
        *optional,
        "invert_references",
        "optimise_references",
        "lens_strips",
        "plot_lens",
        "plot_edit_strip",
        "plot_edit_probability",
    }
    assert {"fit_closed_forms", "semantic_consistency"} <= planned

    def left_out(config):
        for section in ("featinv", "lens", "filters", "edits"):
            config.pop(section)

    assert not _planned_rules(tmp_path, _tiny(left_out)) & optional


@pytest.fixture(scope="module")
def workflow(tmp_path_factory) -> Path:
    """One copy of the workflow for the job-level cases, which run in it one after another."""
    workdir = tmp_path_factory.mktemp("bad_inputs")
    copy_workflow(workdir)
    return workdir


def _run(workdir: Path, config: dict, target: str) -> str:
    """Run the workflow to `target`, which must fail; its output, with the failed jobs' logs."""
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(workdir, "--show-failed-logs", target, check=False)
    assert result.returncode != 0
    return result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    ("study", "layout", "fragments"),
    [
        (
            "truncated",
            {"train/cat": 2, "train/dog": 2, "test/cat": 1},
            ["train/dog/truncated.png: cannot read the image", "set data.on_error: skip"],
        ),
        (
            "no_test",
            {"train/cat": 2, "train/dog": 2},
            ["the data set has no test images", "root/test/{class}/"],
        ),
    ],
    ids=["truncated_image", "no_test_split"],
)
def test_bad_image_folders_stop_the_image_job(workflow, study, layout, fragments):
    root = photo_folder(workflow / f"photos_{study}", layout)
    if study == "truncated":
        (root / "train" / "dog" / "truncated.png").write_bytes(PNG[: len(PNG) // 2])
    target = f"results/{study}/images/original.zarr"
    output = _run(workflow, _folder_study(study, root.name), target)
    for fragment in fragments:
        assert fragment in output
    assert written(workflow / target) == []


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "section", "fragments"),
    [
        ("unknown_model", {"model": "resnet_nine", "layers": ["layer2"]}, ["'resnet_nine'"]),
        ("unknown_layer", {**TINY_RESNET, "layers": ["layer9"]}, ["'layer9'", "'layer2'"]),
        ("other_models_layer", {**TINY_RESNET, "layers": ["stages.1"]}, ["'stages.1'"]),
    ],
    ids=["unknown_model", "unknown_layer", "other_models_layer"],
)
def test_a_bad_backbone_stops_before_any_feature_store(workflow, name, section, fragments):
    """Today these stop in the first job that builds the model (extract, or train_backbone for
    weights: train); featlab.backbones.check_backbone can stop them at planning."""
    config = {
        "study": "backbones",
        "data": {"shapes": {"image_size": 32, "n_train": 4, "n_test": 2, "seed": 0}},
        "manipulations": {"flip": {"kind": "flip", "axis": "horizontal"}},
        "backbones": {name: section},
    }
    target = f"results/backbones/features/{name}/original.zarr"
    output = _run(workflow, config, target)
    for fragment in fragments:
        assert fragment in output
    assert written(workflow / target) == []
    assert written(workflow / f"results/backbones/features/{name}/original.shards/00000.zarr") == []
