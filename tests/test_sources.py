"""Real image sources: folder layouts, file lists, odd and unreadable images, the streamed store."""

import io
import os
import shutil
import subprocess
import sys

import featlab._compat

import numpy as np
import pandas as pd
import pytest
import timm
from PIL import Image
from timm.data.transforms_factory import transforms_imagenet_eval

import featlab.data.images
from featlab.data.images import ImageStore
from featlab.data.sources import (
    UnreadableImage,
    count_images,
    fit_image,
    list_folder,
    load_image,
    prepare_images,
    read_filelist,
    resolve_size,
    survey,
)

RED, BLUE, WHITE = (255, 0, 0), (0, 0, 255), (255, 255, 255)


def save(path, image: Image.Image, **kwargs) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, **kwargs)
    return str(path)


def noise(seed: int, size=(24, 16)) -> Image.Image:
    """A random RGB image (width, height = size): compresses badly, so truncation bites."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def make_folder(root, layout: dict[str, int]) -> None:
    """layout: relative folder -> number of PNGs to write there."""
    for seed, (folder, n) in enumerate(layout.items()):
        for i in range(n):
            save(root / folder / f"{i:02d}.png", noise(100 * seed + i))


# Folder and file list


def test_split_folders_give_the_splits_and_sorted_class_indices(tmp_path):
    make_folder(tmp_path, {"train/dog": 2, "train/cat": 2, "test/cat": 1, "test/emu/sub": 1})
    (tmp_path / "train" / "dog" / ".hidden.png").write_bytes(b"")
    (tmp_path / "train" / "dog" / "notes.txt").write_text("not an image")
    save(tmp_path / "train" / "dog" / "upper.JPG", noise(9))
    entries, classes = list_folder(tmp_path)
    assert classes == ["cat", "dog", "emu"]  # the sorted union over the split folders
    assert [(e.split, e.label, e.image_id) for e in entries] == [
        ("train", 0, "train/cat/00.png"),
        ("train", 0, "train/cat/01.png"),
        ("train", 1, "train/dog/00.png"),
        ("train", 1, "train/dog/01.png"),
        ("train", 1, "train/dog/upper.JPG"),
        ("test", 0, "test/cat/00.png"),
        ("test", 2, "test/emu/sub/00.png"),
    ]
    assert entries[-1].path == os.path.join(tmp_path, "test/emu/sub/00.png")


def test_class_folders_are_split_by_a_seeded_fraction(tmp_path):
    make_folder(tmp_path, {"b": 10, "a": 20})
    fractions = {"val": 0.1, "test": 0.2}
    entries, classes = list_folder(tmp_path, fractions, seed=3)
    assert classes == ["a", "b"]
    counts = pd.DataFrame([vars(e) for e in entries]).groupby(["label", "split"]).size()
    assert counts.to_dict() == {
        (0, "test"): 4, (0, "train"): 14, (0, "val"): 2,
        (1, "test"): 2, (1, "train"): 7, (1, "val"): 1,
    }  # fmt: skip
    assert [e.split for e in entries] == sorted(
        (e.split for e in entries), key=("train", "val", "test").index
    )
    assert list_folder(tmp_path, fractions, seed=3)[0] == entries
    assert list_folder(tmp_path, fractions, seed=4)[0] != entries
    assert {e.image_id.split("/")[0] for e in entries if e.label == 1} == {"b"}


def test_missing_or_empty_folders_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere"):
        list_folder(tmp_path / "nowhere")
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(ValueError, match="empty holds no images"):
        list_folder(tmp_path / "empty")


def test_ambiguous_folder_layouts_stop(tmp_path):
    make_folder(tmp_path / "mixed", {"train/cat": 1, "dog": 1})
    with pytest.raises(
        ValueError, match=r"mixes split folders \(train\) with other folders \(dog\)"
    ):
        list_folder(tmp_path / "mixed")
    make_folder(tmp_path / "loose", {"cat": 1, ".": 1})
    with pytest.raises(ValueError, match="images outside a class folder"):
        list_folder(tmp_path / "loose")


def test_file_list_with_relative_and_absolute_paths(tmp_path):
    outside = save(tmp_path / "elsewhere" / "x.png", noise(1))
    (tmp_path / "list").mkdir()
    csv = tmp_path / "list" / "images.csv"
    csv.write_text(f"path,label,split\nimg/a.png,2,train\n{outside},0,test\n")
    entries, classes = read_filelist(csv)
    assert classes == ["0", "1", "2"]
    assert [(e.path, e.label, e.split, e.image_id) for e in entries] == [
        (os.path.join(tmp_path, "list", "img/a.png"), 2, "train", "img/a.png"),
        (outside, 0, "test", outside),
    ]
    csv.write_text("path,label,split\na.png,zebra,train\nb.png,ant,val\nc.png,zebra,test\n")
    entries, classes = read_filelist(csv)
    assert classes == ["ant", "zebra"]
    assert [e.label for e in entries] == [1, 0, 1]


def test_file_list_errors_name_the_csv_the_row_and_the_fix(tmp_path):
    csv = tmp_path / "images.csv"
    csv.write_text("path,label\na.png,0\n")
    with pytest.raises(ValueError, match=r"images\.csv has no column split.*header row"):
        read_filelist(csv)
    csv.write_text("path,label,split\na.png,0,train\nb.png,1,validation\n")
    with pytest.raises(ValueError, match=r"images\.csv, line 3: split 'validation' is not one of"):
        read_filelist(csv)
    with pytest.raises(FileNotFoundError, match=r"missing\.csv"):
        read_filelist(tmp_path / "missing.csv")


def test_count_images_for_planning(tmp_path):
    make_folder(tmp_path / "data", {"cat": 3, "dog": 2})
    assert count_images({"source": "folder", "folder": {"root": str(tmp_path / "data")}}) == 5
    assert count_images({"source": "folder", "folder": {"root": str(tmp_path / "no")}}) is None
    (tmp_path / "l.csv").write_text("path,label,split\na.png,0,train\n")
    assert count_images({"source": "filelist", "filelist": {"path": str(tmp_path / "l.csv")}}) == 1
    assert count_images({"source": "filelist", "filelist": {"path": "absent.csv"}}) is None
    assert count_images({"source": "shapes", "shapes": {"n_train": 7, "n_test": 3}}) == 10


def test_the_manifest_follows_the_files_not_where_they_lie(tmp_path):
    """The planning digest changes with any image replaced, added, removed or re-dated, and
    stays when nothing changed or the data set moved with its files."""
    root = tmp_path / "a" / "data"
    make_folder(root, {"train/cat": 2, "test/dog": 2})

    def digest(folder=None) -> str:
        data = {"source": "folder", "folder": {"root": str(folder or root)}}
        return survey(data, manifest=True).manifest

    first = digest()
    assert digest() == first  # touching nothing changes nothing
    assert survey({"source": "folder", "folder": {"root": str(root)}}).manifest is None
    shutil.copytree(root, tmp_path / "copy")  # copy2 keeps the modification times
    assert digest(tmp_path / "copy") == first
    os.rename(tmp_path / "a", tmp_path / "b")  # the data set's parent renamed
    root = tmp_path / "b" / "data"
    assert digest() == first
    seen = {first}
    for change in (
        lambda: save(root / "train/cat/00.png", noise(99)),  # replaced
        lambda: save(root / "test/dog/02.png", noise(98)),  # added
        lambda: os.remove(root / "train/cat/01.png"),  # removed
        lambda: os.utime(root / "test/dog/00.png", ns=(0, 10**18)),  # re-dated: stat, not read
        lambda: (root / "test/bird").mkdir(),  # an empty class folder shifts no label, adds a class
    ):
        change()
        seen.add(digest())
    assert len(seen) == 6


def test_a_file_lists_manifest_follows_its_rows(tmp_path):
    make_folder(tmp_path, {"img": 2})
    csv = tmp_path / "list.csv"
    data = {"source": "filelist", "filelist": {"path": str(csv)}}
    digests = []
    for text in (
        "path,label,split\nimg/00.png,0,train\nimg/01.png,1,test\n",
        "path, label, split\nimg/00.png, 0, train\nimg/01.png, 1, test\n",  # the same rows
        "path,label,split\nimg/00.png,1,train\nimg/01.png,0,test\n",  # labels swapped
        "path,label,split\nimg/01.png,1,test\nimg/00.png,0,train\n",  # rows reordered
        "path,label,split\nimg/00.png,0,train\nimg/01.png,1,test\nimg/02.png,1,test\n",
    ):
        csv.write_text(text)
        digests.append(survey(data, manifest=True).manifest)
    assert digests[0] == digests[1]
    assert len(set(digests)) == 4
    save(tmp_path / "img/02.png", noise(7))  # a listed file that was missing appears
    assert survey(data, manifest=True).manifest != digests[4]


# Decoding


def exif_rotated_jpeg(path) -> str:
    """40 wide, 20 high, left half red, right half blue, shown rotated 90 degrees clockwise."""
    image = Image.new("RGB", (40, 20), BLUE)
    image.paste(RED, (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    return save(path, image, exif=exif, quality=95)


def odd_images(folder) -> dict[str, tuple[str, list]]:
    """name -> (file, expected RGB of the pixels (0, 0) and (1, 0))."""
    rgba = Image.new("RGBA", (2, 1))
    rgba.putdata([(10, 20, 30, 0), (200, 100, 50, 255)])
    la = Image.new("LA", (2, 1))
    la.putdata([(50, 0), (50, 255)])
    palette = Image.new("P", (2, 1))
    palette.putpalette([0, 0, 0, *RED, *BLUE])
    palette.putdata([1, 2])
    grey16 = Image.fromarray(np.array([[0xABCD, 0x1234]], dtype=np.uint16))
    return {
        "rgba": (save(folder / "rgba.png", rgba), [WHITE, (200, 100, 50)]),
        "la": (save(folder / "la.png", la), [WHITE, (50, 50, 50)]),
        "palette": (save(folder / "p.png", palette), [RED, BLUE]),
        "palette_transparent": (save(folder / "pt.png", palette, transparency=1), [WHITE, BLUE]),
        "palette_gif": (save(folder / "pt.gif", palette, transparency=2), [RED, WHITE]),
        "grey": (save(folder / "l.png", Image.new("L", (2, 1), 77)), [(77, 77, 77)] * 2),
        "grey16": (save(folder / "g16.png", grey16), [(0xAB,) * 3, (0x12,) * 3]),
    }


@pytest.mark.parametrize(
    "name", ["rgba", "la", "palette", "palette_transparent", "palette_gif", "grey", "grey16"]
)
def test_odd_images_decode_to_the_right_rgb(tmp_path, name):
    path, expected = odd_images(tmp_path)[name]
    image = load_image(path)
    assert image.mode == "RGB"
    assert [image.getpixel((x, 0)) for x in range(2)] == expected


def test_cmyk_jpeg_decodes_to_rgb(tmp_path):
    path = save(tmp_path / "cmyk.jpg", Image.new("CMYK", (8, 8), (0, 255, 255, 0)), quality=95)
    pixels = np.asarray(load_image(path)).astype(int)
    assert pixels.shape == (8, 8, 3)
    assert np.abs(pixels - RED).max() <= 8


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.asarray(load_image(exif_rotated_jpeg(tmp_path / "rotated.jpg"))).astype(int)
    assert pixels.shape == (40, 20, 3)  # (H, W, 3): upright, taller than wide
    assert np.abs(pixels[2, 2] - RED).max() <= 16  # the left half is now on top
    assert np.abs(pixels[-3, 2] - BLUE).max() <= 16


def unreadable_files(folder) -> dict[str, str]:
    png, jpeg = io.BytesIO(), io.BytesIO()
    noise(1, (64, 64)).save(png, format="PNG")
    noise(2, (64, 64)).save(jpeg, format="JPEG")
    files = {
        "truncated.png": png.getvalue()[: len(png.getvalue()) // 2],
        "truncated.jpg": jpeg.getvalue()[: len(jpeg.getvalue()) // 2],
        "empty.jpg": b"",
        "text.png": b"this is not an image\n",
    }
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return {name: str(folder / name) for name in files}


@pytest.mark.parametrize("name", ["truncated.png", "truncated.jpg", "empty.jpg", "text.png"])
def test_unreadable_files_raise_naming_the_file(tmp_path, name):
    path = unreadable_files(tmp_path)[name]
    with pytest.raises(UnreadableImage, match=f"{name}: cannot read the image.*on_error: skip"):
        load_image(path)


def test_decompression_bombs_are_unreadable(tmp_path, monkeypatch):
    path = save(tmp_path / "big.png", noise(0))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 24 x 16 is more than twice that
    with pytest.raises(UnreadableImage, match="DecompressionBombError"):
        load_image(path)


def test_fit_image_is_timms_eval_geometry():
    # 100 x 50 with a horizontal ramp: the crop must come from the centre
    ramp = np.broadcast_to(np.linspace(0, 255, 100).astype(np.uint8)[None, :, None], (50, 100, 3))
    image = Image.fromarray(np.ascontiguousarray(ramp))
    for crop_pct in (1.0, 0.875):
        fitted = fit_image(image, 32, crop_pct)
        assert fitted.shape == (32, 32, 3)
        assert fitted.dtype == np.uint8
        timm_eval = transforms_imagenet_eval(
            32, crop_pct=crop_pct, interpolation="bicubic", normalize=False
        )
        np.testing.assert_array_equal(fitted, timm_eval(image).permute(1, 2, 0).numpy())
    # crop_pct 1: shorter side 50 -> 32, longer 100 -> 64, columns 16..47 kept: the middle half
    assert abs(int(fit_image(image, 32)[16, 0, 0]) - 64) <= 4
    # crop_pct 0.875: shorter side -> 36, longer -> 72, columns 20..51 kept
    assert abs(int(fit_image(image, 32, 0.875)[16, 0, 0]) - 255 * 20 / 72) <= 5


def test_resolve_size_asks_timm():
    resnet = timm.get_pretrained_cfg("resnet18")
    assert resolve_size(None, None, ["resnet18"]) == (resnet.input_size[-1], resnet.crop_pct)
    assert resolve_size(None, 1.0, ["resnet18"]) == (resnet.input_size[-1], 1.0)
    assert resolve_size(96, None, ["resnet18"]) == (96, resnet.crop_pct)
    models = ["resnet18", "vit_tiny_patch16_384"]
    largest = max((timm.get_pretrained_cfg(m) for m in models), key=lambda c: c.input_size[-1])
    assert resolve_size(None, None, models) == (largest.input_size[-1], largest.crop_pct)
    with pytest.raises(ValueError, match="no_such_model"):
        resolve_size(None, None, ["no_such_model"])


# The streamed store


@pytest.fixture
def mixed_folder(tmp_path):
    """A split-folder set of 7 readable images (odd modes among them) and 2 unreadable ones."""
    root = tmp_path / "data"
    make_folder(root, {"train/cat": 3, "test/dog": 2})
    odd = odd_images(tmp_path / "odd")
    bad = unreadable_files(tmp_path / "bad")
    for source, target in [
        (odd["rgba"][0], "train/dog/rgba.png"),
        (odd["grey16"][0], "test/cat/g16.png"),
        (bad["truncated.jpg"], "train/cat/zz_truncated.jpg"),
        (bad["text.png"], "test/dog/text.png"),
    ]:
        (root / target).parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, root / target)
    return root


def test_stop_mode_raises_and_leaves_no_store(tmp_path, mixed_folder):
    entries, _ = list_folder(mixed_folder)
    with pytest.raises(UnreadableImage, match=r"zz_truncated\.jpg"):
        prepare_images(entries, tmp_path / "original.zarr", 16)
    assert not (tmp_path / "original.zarr").exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".original.zarr")]


def test_skip_mode_streams_a_store_that_image_store_reads(tmp_path, mixed_folder, monkeypatch):
    monkeypatch.setattr(featlab.data.images, "MIN_CHUNK_BYTES", 2 * 16 * 16 * 3)  # 2 per chunk
    entries, classes = list_folder(mixed_folder)
    summary = prepare_images(
        entries, tmp_path / "original.zarr", 16, 0.875, on_error="skip", attrs={"classes": classes}
    )
    kept = [e for e in entries if "zz_truncated" not in e.path and "text.png" not in e.path]
    assert summary["n_images"] == len(kept) == 7
    assert [s["path"] for s in summary["skipped"]] == [
        str(mixed_folder / "train/cat/zz_truncated.jpg"),
        str(mixed_folder / "test/dog/text.png"),
    ]
    assert summary["n_per_split"] == {"train": 4, "val": 0, "test": 3}
    store = ImageStore(tmp_path / "original.zarr")
    assert len(store) == 7
    assert store.images.chunks == (2, 16, 16, 3)
    assert store.attrs["classes"] == ["cat", "dog"]
    assert store.attrs["skipped"] == summary["skipped"]
    assert (store.attrs["size"], store.attrs["crop_pct"]) == (16, 0.875)
    assert list(store.image_ids) == [e.image_id for e in kept]
    assert list(store.labels) == [e.label for e in kept]
    assert list(store.splits) == [e.split for e in kept]
    images = store.read().images
    for i, entry in enumerate(kept):
        np.testing.assert_array_equal(images[i], fit_image(load_image(entry.path), 16, 0.875))
    # the manifest: every listed file (skipped ones too) in the digest planning computes, and
    # each kept image's file size and modification time
    planned = survey({"source": "folder", "folder": {"root": str(mixed_folder)}}, manifest=True)
    assert store.attrs["manifest"] == summary["manifest"] == planned.manifest
    stats = [os.stat(entry.path) for entry in kept]
    assert store.group["file_size"][:].tolist() == [stat.st_size for stat in stats]
    assert store.group["file_mtime_ns"][:].tolist() == [stat.st_mtime_ns for stat in stats]


def test_worker_processes_write_the_same_store(tmp_path, mixed_folder):
    entries, _ = list_folder(mixed_folder)
    stores = {}
    for workers in (0, 2):
        path = tmp_path / f"workers{workers}.zarr"
        prepare_images(entries, path, 16, on_error="skip", workers=workers)
        stores[workers] = ImageStore(path)
    np.testing.assert_array_equal(stores[0].images[:], stores[2].images[:])
    assert list(stores[0].image_ids) == list(stores[2].image_ids)
    assert stores[0].attrs == stores[2].attrs


def test_workers_do_not_rerun_an_unguarded_script(tmp_path, mixed_folder):
    """Snakemake runs scripts without `if __name__ == "__main__"`; spawned workers must not rerun
    them (each rerun would start workers of its own, and the pool would break)."""
    script = tmp_path / "script.py"
    script.write_text(
        "from featlab.data.sources import list_folder, prepare_images\n"
        f"with open({str(tmp_path / 'runs.txt')!r}, 'a') as runs:\n"
        "    runs.write('run\\n')\n"
        f"entries, _ = list_folder({str(mixed_folder)!r})\n"
        f"prepare_images(entries, {str(tmp_path / 'out.zarr')!r}, 8, on_error='skip', workers=2)\n"
    )
    subprocess.run([sys.executable, str(script)], check=True, timeout=120)
    assert (tmp_path / "runs.txt").read_text() == "run\n"
    assert len(ImageStore(tmp_path / "out.zarr")) == 7
