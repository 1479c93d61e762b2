"""The real Snakefile on the tiny config: a full run, caching, exact reruns, early config errors."""

import importlib.metadata
import json
import math
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image
from study_tables import MAX_FIGURE_SIDE
from tiny_editors import save_tiny_editor
from tiny_study import REPO, SNAKEMAKE, TINY, copy_workflow, planned_jobs, snakemake

import featlab
from featlab.codehash import featlab_imports
from featlab.data.images import ImageStore
from featlab.store import FeatureStore

pytestmark = pytest.mark.slow


def descendants(jobs: list[dict], roots: list[dict]) -> set[str]:
    """Outputs of `roots` and of every job that (transitively) reads one of them."""
    reached = set().union(*(job["output"] for job in roots))
    grew = True
    while grew:
        grew = False
        for job in jobs:
            if job["input"] & reached and not job["output"] <= reached:
                reached |= job["output"]
                grew = True
    return reached


def _outputs(jobs: list[dict]) -> set[str]:
    return set().union(*(job["output"] for job in jobs)) if jobs else set()


def test_full_run_writes_the_table_and_figures(study):
    results = study["dir"] / "results" / "tiny"
    table = pd.read_csv(results / "tables" / "metrics.csv", keep_default_na=False)
    assert list(table.columns[:11]) == [
        "study",
        "stage",
        "backbone",
        "layer",
        "manipulation",
        "mapping",
        "comparison",
        "split",
        "metric",
        "value",
        "n",
    ]
    classifier = table[(table.stage == "classifier") & (table.manipulation == "")]
    assert set(classifier.backbone) == set(study["config"]["backbones"])
    test_cosine = table[(table.metric == "cosine_median") & (table.split == "test")]
    for manipulation in study["config"]["manipulations"]:
        mappings = set(test_cosine[test_cosine.manipulation == manipulation].mapping)
        assert {"identity", "ridge"} <= mappings
    for figure in ("cosine_by_layer", "relative_cosine", "linear_structure", "rank_curves"):
        assert (results / "figures" / f"{figure}.png").stat().st_size > 0
    # filter decoding: each method's fidelity on the decoded layer, and its neuron grid
    fidelity = table[(table.stage == "filters") & (table.metric == "fidelity")]
    assert set(zip(fidelity.layer, fidelity.comparison, strict=True)) == {
        ("layer2", "substitution"),
        ("layer2", "deconvolution"),
    }
    assert (results / "figures" / "filters" / "cnn" / "layer2.png").stat().st_size > 0
    # the steerable lens: every (default) method and variant at every budget, and its figures
    lens = table[(table.stage == "lens") & (table.manipulation == "circle_to_square_0")]
    for method in ("steerable_phase", "steerable_phase_amplitude", "fourier_phase", "pixel"):
        for variant in ("one_step", "iterative"):
            for budget in study["config"]["lens"]["budgets"]:
                morph = lens[lens.comparison == f"{method}_{variant}_l2_{budget:g}"]
                assert {"target_probability", "transfer_top1", "warp_share"} <= set(morph.metric)
    for figure in ("lens_summary.png", "lens/cnn/circle_to_square_0.gif"):
        assert (results / "figures" / figure).stat().st_size > 0
    # FeatInv: the true features' reconstructions once per cell (empty mapping), each inverted
    # mapping against the manipulated image and the reconstruction of the true features
    inversion = table[(table.stage == "inversion") & (table.layer == "layer3")]
    assert set(inversion.mapping) == {"", "identity", "ridge", "linear"}
    references = inversion[inversion.mapping == ""]
    for comparison in (
        "reconstructed_original_vs_original",
        "mean_image_vs_original",
        "perturbed_x1_vs_reconstructed_original",
    ):
        assert {"ssim", "mse", "lpips_random_backbone"} <= set(
            references[references.comparison == comparison].metric
        )
    for mapping in ("identity", "ridge", "linear"):
        mapped = inversion[inversion.mapping == mapping]
        assert {"mapped_vs_manipulated", "mapped_vs_reconstructed_manipulated"} <= set(
            mapped[mapped.metric == "ssim"].comparison
        )
    assert set(inversion.n) == {4}
    # the optimiser beside FeatInv on layer3, and alone on layer2 (no FeatInv model there)
    optimised = inversion[inversion.comparison.str.startswith("optimised_")]
    for comparison in (
        "optimised_reconstructed_original_vs_original",
        "optimised_pooled_original_vs_optimised_reconstructed_original",
        "optimised_mapped_vs_optimised_reconstructed_manipulated",
    ):
        assert "ssim" in set(optimised[optimised.comparison == comparison].metric)
    assert set(optimised.mapping) == {"", "identity", "ridge", "linear"}
    shallow = table[(table.stage == "inversion") & (table.layer == "layer2")]
    assert {"optimised_mapped_vs_conditioning", "mean_image_vs_original"} <= set(shallow.comparison)
    assert not shallow.comparison.str.startswith("reconstructed_").any()
    for figure in (
        "inversion_scores.png",
        "inverters.png",
        "featinv/cnn/layer3/rot90.png",
        "featinv/cnn/layer2/rot90.png",
    ):
        assert (results / "figures" / figure).stat().st_size > 0
    # every figure fits a page (test_plots.py checks the default study's shapes)
    for figure in (results / "figures").rglob("*.png"):
        width, height = Image.open(figure).size
        assert max(width, height) <= MAX_FIGURE_SIDE, f"{figure.name} is {width} x {height} px"
    # provenance: the resolved config (defaults filled) and the versions that produced the study
    provenance = json.loads((results / "provenance.json").read_text())
    assert provenance["study"] == provenance["config"]["study"] == "tiny"
    assert set(provenance["config"]) > set(study["config"])
    assert provenance["config"]["backbones"]["cnn"]["layers"] == ["layer2", "layer3"]
    for package in ("torch", "torchvision", "timm", "zarr", "numpy", "snakemake"):
        assert provenance["packages"][package] == importlib.metadata.version(package)
    assert provenance["featlab"]["version"] == featlab.__version__


def test_featmap_fits_every_mapping_type_where_the_subset_selects(study):
    table = pd.read_csv(
        study["dir"] / "results" / "tiny" / "tables" / "metrics.csv", keep_default_na=False
    )
    fits = table[(table.stage == "mapping") & (table.metric == "cosine_median")]
    subset = fits[(fits.manipulation == "rot90") & (fits.layer == "layer3")]
    assert set(subset.mapping) == set(study["config"]["mappings"])
    elsewhere = set(fits[fits.manipulation != "rot90"].mapping)
    # closed form and baselines only
    assert elsewhere == {"identity", "ridge", "ridge_relative", "procrustes"}
    # spatial_first: Procrustes and the transformer rotate the originals first on rot90
    first = subset[subset.comparison == "mapped_vs_manipulated_spatial_first"]
    assert set(first.mapping) == {"procrustes", "transformer"}
    # semantic consistency of every mapping, and the linear-structure analysis of affine maps
    semantic = table[(table.stage == "mapping") & (table.metric == "top1_agreement")]
    semantic = semantic[semantic.manipulation == "rot90"]
    assert set(semantic[semantic.layer == "layer3"].mapping) == set(study["config"]["mappings"])
    analysis = table[(table.stage == "analysis") & (table.metric == "effective_rank")]
    assert {"ridge", "ridge_relative", "procrustes", "linear"} <= set(analysis.mapping)
    assert set(analysis.comparison) <= {"standardised", "standardised_spatial_first"}


def test_every_semantic_row_depends_on_what_the_mapping_maps(study):
    table = pd.read_csv(
        study["dir"] / "results" / "tiny" / "tables" / "metrics.csv", keep_default_na=False
    )
    jsd = table[(table.stage == "mapping") & table.comparison.str.startswith("original_vs_mapped")]
    for (backbone, layer, manipulation), rows in jsd.groupby(["backbone", "layer", "manipulation"]):
        if len(rows) > 1:
            assert rows.value.nunique() > 1, f"{backbone} {layer} {manipulation}: one JSD for all"
    # The tiny ViT's blocks.1 is its last block: the head reads only the class token, which a
    # position-wise map maps too; a grid-only mapping would score like the original, so it has
    # no rows there.
    last = jsd[(jsd.backbone == "vit") & (jsd.manipulation == "rot90")]
    # the mappings fitted there, without the spatial baseline
    assert set(last.mapping) == {"identity", "ridge", "ridge_relative", "procrustes"}
    value = last.set_index("mapping").value
    assert value["identity"] < 1e-6 < value["ridge"]


def test_edits_read_magnified_edits_and_agree_with_semantic_consistency_at_alpha_one(study):
    results = study["dir"] / "results" / "tiny"
    table = pd.read_csv(results / "tables" / "metrics.csv", keep_default_na=False)
    edits = table[table.stage == "edits"]
    cells = set(zip(edits.backbone, edits.layer, edits.manipulation, strict=True))
    assert cells == {
        (b, layer, m)
        for b, layer in (("cnn", "layer3"), ("vit", "blocks.1"))
        for m in ("rot90", "swap_class")
    }
    # the trained linear map where it is fitted (rot90, layer3), ridge everywhere
    assert set(edits[edits.layer == "layer3"].mapping) == {"", "ridge", "linear"}
    assert set(edits[edits.manipulation == "swap_class"].mapping) == {"", "ridge"}
    # alpha = 1 is the mapping: its agreement with the manipulated images is semantic
    # consistency's on the same test images
    agreement = edits[edits.comparison == "extrapolated_x1_vs_manipulated"]
    semantic = table[(table.stage == "mapping") & (table.comparison == "mapped_vs_manipulated")]
    semantic = semantic[semantic.metric == "top1_agreement"]
    for row in agreement[agreement.metric == "top1_agreement"].itertuples():
        mine = semantic[(semantic.backbone == row.backbone) & (semantic.layer == row.layer)]
        mine = mine[(mine.manipulation == row.manipulation) & (mine.mapping == row.mapping)]
        assert mine.value.item() == pytest.approx(row.value)
        assert mine.n.item() == row.n
    # every alpha, rank and control is read; FeatInv inverts them where the layer has a model
    ridge = edits[(edits.manipulation == "swap_class") & (edits.mapping == "ridge")]
    wanted = {"extrapolated_x-1", "extrapolated_x2", "truncated_k1", "perturbed_x2"}
    assert wanted <= set(ridge[ridge.metric == "target_probability"].comparison)
    inverted = ridge[ridge.comparison.str.startswith("reconstructed_")]
    assert set(inverted.layer) == {"layer3"}
    # the gradient lens where the grid reaches the output (not the tiny ViT's last block)
    lens = ridge[ridge.comparison == "feature_lens_x2"]
    assert set(lens.layer) == {"layer3"}
    assert (results / "figures" / "edits" / "cnn" / "layer3" / "swap_class.png").is_file()
    assert (results / "figures" / "edit_probability.png").stat().st_size > 0


def test_second_run_has_nothing_to_do(study):
    assert planned_jobs(study["dir"]) == []


def test_reordering_config_keys_reruns_nothing(study):
    workdir = study["dir"]
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    reordered = {key: config[key] for key in reversed(list(config))}
    reordered["manipulations"] = dict(reversed(config["manipulations"].items()))
    (workdir / "config.yaml").write_text(yaml.safe_dump(reordered, sort_keys=False))
    try:
        assert planned_jobs(workdir) == []
    finally:
        shutil.copy2(TINY, workdir / "config.yaml")


def test_changing_one_manipulation_reruns_exactly_its_descendants(study):
    workdir = study["dir"]
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["manipulations"]["noise"]["sigma"] += 5
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    try:
        changed = [job for job in study["plan"] if job["rule"] == "manipulate"]
        changed = [job for job in changed if any("/noise.zarr" in o for o in job["output"])]
        assert len(changed) == 1
        expected = descendants(study["plan"], changed)
        rerun = _outputs(planned_jobs(workdir))
        assert rerun == expected
        assert not any("/rot90" in path or "/swap_class" in path for path in rerun)
    finally:
        shutil.copy2(TINY, workdir / "config.yaml")


def test_one_mapping_setting_reruns_its_group_of_mappings_only(study):
    """featmap.jobs: batched: ridge's gamma reruns the closed-form groups (every cell's identity
    and closed forms) and what reads them, not the trained mappings or the spatial baseline."""
    workdir = study["dir"]
    config = yaml.safe_load((workdir / "config.yaml").read_text())
    config["mappings"]["ridge"]["gamma"] = 2.0
    (workdir / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    try:
        roots = [job for job in study["plan"] if job["rule"] == "fit_closed_forms"]
        assert roots
        rerun = planned_jobs(workdir)
        assert _outputs(rerun) == descendants(study["plan"], roots)
        assert not {job["rule"] for job in rerun} & {"train_mappings", "evaluate_baseline"}
    finally:
        shutil.copy2(TINY, workdir / "config.yaml")


def test_both_mapping_layouts_plan_the_same_files(tmp_path):
    """featmap.jobs per_cell and batched make the same outputs, one cell per job or grouped."""
    copy_workflow(tmp_path)
    config = yaml.safe_load(TINY.read_text())
    plans = {}
    for layout in ("per_cell", "batched"):
        config["featmap"]["jobs"] = layout
        (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
        plans[layout] = planned_jobs(tmp_path)
    assert _outputs(plans["per_cell"]) == _outputs(plans["batched"])
    fits = {"evaluate_baseline", "fit_closed_form", "train_mapping"}
    folders = {
        layout: [
            {path.rsplit("/", 1)[0] for path in job["output"]}
            for job in jobs
            if job["rule"] in fits | {"fit_closed_forms", "train_mappings"}
        ]
        for layout, jobs in plans.items()
    }
    assert all(len(cells) == 1 for cells in folders["per_cell"])  # one cell per job
    assert {job["rule"] for job in plans["batched"]} & fits == {"evaluate_baseline"}  # spatial
    assert max(map(len, folders["batched"])) > 1
    assert len(folders["batched"]) < len(folders["per_cell"])


@pytest.mark.parametrize("module", ["io.py", "mapping/semantic.py", "workers.py"])
def test_a_comment_in_a_module_reruns_the_jobs_whose_scripts_import_it(study, module):
    """Code hashes follow the import graph: the jobs whose scripts reach the module, transitively
    (featlab.codehash), rerun with what reads their outputs, and nothing else does."""
    workdir = study["dir"]
    path = workdir / "src" / "featlab" / module
    source = path.read_text()
    path.write_text(source + "\n# a comment\n")
    try:
        scripts = {script.stem: script for script in (workdir / "workflow_scripts").glob("*.py")}
        reached = {
            name
            for name, script in scripts.items()
            if path in featlab_imports(script, workdir / "src")
        }
        roots = [job for job in study["plan"] if job["rule"] in reached]
        assert roots
        rerun = planned_jobs(workdir)
        assert _outputs(rerun) == descendants(study["plan"], roots)
        if module == "io.py":  # every script writes through featlab.io
            assert _outputs(rerun) == _outputs(study["plan"])
    finally:
        path.write_text(source)


def test_editing_the_plotting_code_reruns_only_plotting(study):
    workdir = study["dir"]
    module = workdir / "src" / "featlab" / "plots" / "base.py"
    source = module.read_text()
    module.write_text(source + "\n# an edit\n")
    try:
        rules = {job["rule"] for job in planned_jobs(workdir)}
        assert "plot_cosine" in rules
        assert not rules & {"render_shapes", "manipulate", "train_backbone", "extract", "aggregate"}
    finally:
        module.write_text(source)


def test_editing_the_sampler_reruns_the_inversions_but_not_training_features_or_mappings(study):
    workdir = study["dir"]
    module = workdir / "src" / "featlab" / "featinv" / "sample.py"
    source = module.read_text()
    module.write_text(source + "\n# an edit\n")
    try:
        rules = {job["rule"] for job in planned_jobs(workdir)}
        assert {"invert_references", "invert_featinv", "aggregate"} <= rules
        # training draws no samples: the sampler's code is not its code (featlab.codehash)
        assert not rules & {
            "train_featinv",
            "extract",
            "fit_closed_forms",
            "train_mappings",
            "lens",
        }
    finally:
        module.write_text(source)


# An inpainting edit without the region it repaints.
INPAINT = {"kind": "semantic", "editor": "inpaint", "model": "editors/sd", "prompt": "a cat"}


@pytest.mark.parametrize(
    ("edit", "key"),
    [
        (lambda c: c["backbones"]["cnn"].update(layers="layer2"), "layers"),
        (lambda c: c["manipulations"].update(bad={"kind": "melt"}), "kind"),
        (lambda c: c["manipulations"]["rot90"].pop("angle"), "angle"),
        (lambda c: c["data"]["shapes"].update(n_train="many"), "n_train"),
        (lambda c: c.update(colour_scheme="dark"), "colour_scheme"),
        (lambda c: c["featinv"].update(layers={"cnn": ["layer9"]}), "featinv.layers"),
        (lambda c: c["featinv"]["sample"].update(scheduler="euler"), "scheduler"),
        (lambda c: c["featinv"]["model"].update(patch_size=3), "featinv.model.patch_size"),
        (lambda c: c["featinv"]["invert"].update(manipulations=["melt"]), "featinv.invert"),
        (lambda c: c["featinv"]["optimise"].update(loss="l1"), "loss"),
        (
            lambda c: c["featinv"]["optimise"].update(layers={"cnn": ["layer9"]}),
            "featinv.optimise.layers",
        ),
        (lambda c: c["manipulations"].update(paint=INPAINT), "manipulations.paint: semantic"),
        (lambda c: c["editing"].update(offload="cpu"), "offload"),
        (lambda c: c["edits"].update(manipulations=["melt"]), "edits.manipulations"),
        (lambda c: c["edits"].update(layers={"cnn": ["layer9"]}), "edits.layers"),
        (lambda c: c["edits"].update(invert_images=99), "edits.invert_images"),
        (lambda c: c["edits"].update(mappings=["mlp"]), "mappings"),
    ],
)
def test_bad_config_stops_before_any_job_naming_the_key(tmp_path, edit, key):
    config = yaml.safe_load(TINY.read_text()) | {"editing": {}}
    edit(config)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    command = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--cores", "1"]
    command += ["--configfile", "config.yaml", "--dry-run"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode != 0
    assert key in result.stdout + result.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    ("preset", "shards"),
    [("featmap_cars.yaml", 17), ("featinv_imagenet.yaml", 134)],
)
def test_presets_validate_and_plan_without_their_data(tmp_path, preset, shards):
    """The paper presets plan their whole DAG here, from data.n_images: one extraction job per
    shard of every image set and backbone, the gathers, the fits and FeatInv."""
    config = yaml.safe_load((REPO / "configs" / preset).read_text())
    command = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--cores", "1", "-n"]
    command += ["--quiet", "rules", "--configfile", str(REPO / "configs" / preset)]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = dict(re.findall(r"^(\w+)\s+(\d+)$", result.stdout, re.MULTILINE))
    imagesets = 1 + len(config["manipulations"])
    assert int(jobs["extract"]) == shards * imagesets * len(config["backbones"])
    assert int(jobs["gather_features"]) == imagesets * len(config["backbones"])
    assert {"prepare_images", "train_mappings", "train_featinv", "invert_featinv"} <= set(jobs)
    assert "render_shapes" not in jobs
    edited = [name for name, spec in config["manipulations"].items() if spec["kind"] == "semantic"]
    per_shard = config.get("editing", {}).get("images_per_shard", 200)
    edit_shards = math.ceil(config["data"]["n_images"] / per_shard)
    assert int(jobs.get("edit_images", 0)) == edit_shards * len(edited)
    assert int(jobs.get("gather_edits", 0)) == len(edited)
    assert int(jobs["manipulate"]) == len(config["manipulations"]) - len(edited)


def test_a_real_data_source_stops_when_its_count_disagrees(tmp_path):
    """data.n_images is checked against the file list when it is present."""
    config = yaml.safe_load((REPO / "configs" / "featinv_imagenet.yaml").read_text())
    (tmp_path / "list.csv").write_text("path,label,split\na.png,0,train\nb.png,1,test\n")
    config["data"]["filelist"]["path"] = "list.csv"
    (tmp_path / "study.yaml").write_text(yaml.safe_dump(config))
    command = [str(SNAKEMAKE), "-s", str(REPO / "Snakefile"), "--cores", "1", "-n"]
    result = subprocess.run(
        [*command, "--configfile", "study.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "holds 2 images but data.n_images says 1331167" in result.stdout + result.stderr


def write_photos(root):
    """An image folder of 16 random photos in train and test, one grayscale and one broken file."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 5), ("test", 3)):
        for label in ("cat", "dog"):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    Image.new("LA", (30, 20)).save(root / "test" / "cat" / "gray.png")
    (root / "train" / "dog" / "broken.jpg").write_bytes(b"not an image")


TINY_CNN = {
    "model": "resnet18",
    "model_args": {"channels": [4, 4, 8, 8], "stem_width": 4},
    "layers": ["layer2"],
}


def test_an_image_folder_study_extracts_its_shards_into_one_store(tmp_path):
    """A real data source through the rules: an image folder with an odd and an unreadable file
    (on_error: skip), a manipulation, and sharded extraction read back as one store."""
    write_photos(tmp_path / "photos")
    config = {
        "study": "photos",
        "data": {
            "source": "folder",
            "folder": {"root": "photos"},
            "image_size": 32,
            "on_error": "skip",
        },
        "manipulations": {"flip_h": {"kind": "flip", "axis": "horizontal"}},
        "backbones": {"cnn": TINY_CNN},
        "extraction": {"batch_size": 4, "images_per_shard": 7},
    }
    copy_workflow(tmp_path)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    target = "results/photos/features/cnn/flip_h.zarr"
    snakemake(tmp_path, target)
    images = ImageStore(tmp_path / "results/photos/images/original.zarr")
    assert len(images) == 17  # 16 photos and the grayscale one; the broken file is skipped
    skipped = images.attrs["skipped"]
    assert len(skipped) == 1
    assert skipped[0]["path"].endswith("broken.jpg")
    store = FeatureStore(tmp_path / target)
    assert store.attrs["shard_images"] == [7, 7, 3]  # 18 listed images planned 3 shards
    assert store.read("layer2").shape == (17, 4, 4, 4)


def test_a_changed_image_folder_reruns_its_store_and_what_reads_it(tmp_path):
    """The image folder's files are an input: a replaced or an added photo reruns the image store
    and its dependents; nothing changed, or the folder copied elsewhere with its files, reruns
    nothing."""
    write_photos(tmp_path / "photos")
    config = {
        "study": "photos",
        "data": {"source": "folder", "folder": {"root": "photos"}, "image_size": 32},
        "manipulations": {"flip_h": {"kind": "flip", "axis": "horizontal"}},
        "backbones": {"cnn": TINY_CNN},
        "extraction": {"batch_size": 32},
    }
    config["data"]["on_error"] = "skip"
    copy_workflow(tmp_path)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    # the image store's dependents: a manipulation, and the extraction of the original
    targets = ("results/photos/images/flip_h.zarr", "results/photos/features/cnn/original.zarr")
    full = planned_jobs(tmp_path, *targets)
    store = tmp_path / "results/photos/images/original.zarr"
    prepare = [job for job in full if job["rule"] == "prepare_images"]
    assert len(prepare) == 1
    snakemake(tmp_path, *targets)
    assert planned_jobs(tmp_path, *targets) == []
    cat = tmp_path / "photos" / "train" / "cat"
    for change in (
        lambda: Image.fromarray(np.full((40, 50, 3), 200, np.uint8)).save(cat / "0.png"),
        lambda: Image.fromarray(np.zeros((30, 30, 3), np.uint8)).save(cat / "new.png"),
    ):
        change()
        rerun = planned_jobs(tmp_path, *targets)
        assert _outputs(rerun) == descendants(full, prepare)
        snakemake(tmp_path, *targets)
        assert planned_jobs(tmp_path, *targets) == []
    images = ImageStore(store)
    assert len(images) == 18  # 16 photos, the grayscale and the added one
    replaced = list(images.image_ids).index("train/cat/0.png")
    assert (images.images[replaced] == 200).all()
    # The whole folder copied elsewhere, modification times kept, and the config pointed there
    shutil.copytree(tmp_path / "photos", tmp_path / "elsewhere" / "photos")
    config["data"]["folder"]["root"] = "elsewhere/photos"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    assert planned_jobs(tmp_path, *targets) == []


def test_a_generative_edit_study_runs_end_to_end(tmp_path):
    """A semantic manipulation by a tiny InstructPix2Pix editor saved beside the study: edited in
    two shards, gathered, and carried through extraction, fits, FeatInv and the table."""
    write_photos(tmp_path / "photos")
    save_tiny_editor("instruct_pix2pix", tmp_path / "editors" / "pix2pix")
    edit = {"kind": "semantic", "editor": "instruct_pix2pix", "model": "editors/pix2pix"}
    config = {
        "study": "edits",
        "data": {"source": "folder", "folder": {"root": "photos"}, "image_size": 32},
        "manipulations": {"blue": {**edit, "prompt": "make it blue", "steps": 2}},
        "editing": {"images_per_shard": 9, "batch_size": 4, "device": "cpu"},
        "backbones": {"cnn": TINY_CNN},
        "extraction": {"batch_size": 8},
        "mappings": {"identity": {}, "ridge": {"gamma": 1.0}},
        "featinv": yaml.safe_load(TINY.read_text())["featinv"] | {"layers": {"cnn": ["layer2"]}},
    }
    config["featinv"]["invert"] |= {"manipulations": ["blue"], "mappings": ["identity", "ridge"]}
    config["featinv"]["optimise"] |= {"layers": {}}  # the optimiser is not this test's subject
    config["data"]["on_error"] = "skip"
    copy_workflow(tmp_path)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    plan = planned_jobs(tmp_path)
    edits = [job for job in plan if job["rule"] == "edit_images"]
    assert len(edits) == 2  # 18 listed images, 9 per edit job
    snakemake(tmp_path)
    results = tmp_path / "results" / "edits"
    images = ImageStore(results / "images" / "blue.zarr")
    original = ImageStore(results / "images" / "original.zarr")
    assert len(images) == len(original) == 17  # the broken file is skipped
    assert images.attrs["manipulation"]["prompt"] == "make it blue"
    assert not np.array_equal(images.images[:], original.images[:])
    table = pd.read_csv(results / "tables" / "metrics.csv")
    fits = table[(table.manipulation == "blue") & (table.mapping == "ridge")]
    assert set(fits.split) >= {"train", "test"}
    assert (table.stage == "inversion").any()
    # A new prompt reruns its edits and what reads them: none of the original's jobs.
    config["manipulations"]["blue"]["prompt"] = "make it red"
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    rerun = planned_jobs(tmp_path)
    assert sum(job["rule"] == "edit_images" for job in rerun) == 2
    touched = {path for job in rerun for path in job["output"]}
    assert not any("original" in path for path in touched)
