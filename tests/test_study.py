"""The study's plan (featlab.study), reached without Snakemake: paths, cells, settings, checks."""

import copy
from pathlib import Path

import pytest
import yaml
from snakemake.utils import validate

from featlab import study as study_module
from featlab.mapping.cells import FILES, GROUPS
from featlab.study import Study, gpus

REPO = Path(__file__).resolve().parents[1]
TINY = yaml.safe_load((REPO / "tests" / "data" / "tiny.yaml").read_text())


def _plan(edit=None, backbones: bool = False) -> Study:
    """The tiny study's plan, after `edit` of its config (backbones built only when asked)."""
    config = copy.deepcopy(TINY)
    if edit is not None:
        edit(config)
    validate(config, str(REPO / "schemas" / "config.schema.yaml"))
    return Study.plan(config, REPO, main_process=backbones)


@pytest.fixture(scope="module")
def tiny() -> Study:
    return _plan(backbones=True)


def test_logs_and_benchmarks_mirror_what_a_job_makes(tiny):
    cases = {
        tiny.images("{manipulation}"): "images/{manipulation}",
        tiny.edit_shard("{manipulation}", "{shard}"): "images/{manipulation}/{shard}",
        tiny.feature_shard(
            "{backbone}", "{imageset}", "{shard}"
        ): "features/{backbone}/{imageset}/{shard}",
        tiny.model("{backbone}"): "models/{backbone}",
        tiny.mapping(
            "{backbone}", "{layer}", "semantic.json"
        ): "mappings/{backbone}/{layer}/semantic",
        tiny.figure("filters", "{backbone}", "{layer}"): "figures/filters/{backbone}/{layer}",
        tiny.provenance(): "provenance",
    }
    for made, name in cases.items():
        assert tiny.log(made) == f"results/tiny/logs/{name}.log"
        assert tiny.benchmark(made) == f"results/tiny/benchmarks/{name}.tsv"
    with pytest.raises(ValueError, match="is not under results/tiny/"):
        tiny.log("elsewhere/file.json")
    with pytest.raises(ValueError, match="unknown stage 'mapping'"):
        tiny.path("mapping", "cnn")


def test_cells_follow_the_config(tiny):
    assert tiny.mappings_for("noise", "layer2") == [
        "identity",
        "procrustes",
        "ridge",
        "ridge_relative",
    ]
    # spatial only where the manipulation is geometric; trained maps only in trained_subset
    assert "spatial" in tiny.mappings_for("rot90", "layer2")
    assert "mlp" not in tiny.mappings_for("rot90", "layer2")
    assert "mlp" in tiny.mappings_for("rot90", "layer3")
    assert tiny.computed == ["noise", "rot90", "swap_class"]
    assert tiny.edited == []
    assert tiny.extract_shards == ["00000", "00001"]  # 64 images, 40 a shard
    assert list(tiny.lens_cases) == ["circle_to_square_0"]
    assert tiny.featinv_cells() == {("cnn", "layer3", "rot90"): ["identity", "linear", "ridge"]}
    affine = {entry["mapping"] for entry in tiny.layer_plan("cnn", "layer3", affine_only=True)}
    assert affine == {"ridge", "ridge_relative", "procrustes", "linear"}
    assert tiny.map_file("cnn", "layer3", "rot90", "identity") is None


def test_every_mapping_cell_has_exactly_one_job_in_either_layout(tiny):
    """featmap.jobs: each configured mapping is fitted by a per-cell rule or by one batched
    group, never both and never neither; a batched job's outputs are its cells' own files."""
    per_cell = _plan(lambda c: c["featmap"].update(jobs="per_cell"))
    for plan in (tiny, per_cell):
        singles = [m for kind in FILES for m in plan.single(kind)]
        grouped = [m for group in GROUPS for m in plan.batched(group)]
        assert sorted(singles + grouped) == sorted(plan.config["mappings"])
    assert [m for group in GROUPS for m in per_cell.batched(group)] == []
    assert tiny.single("baseline") == ["spatial"]  # geometric manipulations only
    assert tiny.batched("trained") == [
        "additive",
        "cnn",
        "linear",
        "local_linear",
        "mlp",
        "transformer",
    ]
    folder = tiny.mapping("cnn", "layer3", "rot90")
    outputs = tiny.group_files(folder, "closed_forms")
    assert outputs["ridge_model"] == f"{folder}/ridge/map.safetensors"
    assert outputs["identity_metrics"] == f"{folder}/identity/metrics.json"
    assert "identity_model" not in outputs
    assert {path for path in outputs.values() if path.endswith("metrics.json")} == {
        f"{folder}/{m}/metrics.json" for m in tiny.batched("closed_forms")
    }


def test_a_cell_fit_carries_its_settings_and_spatial_op(tiny):
    assert tiny.fit("rot90", "spatial") == dict(mapping="spatial", settings={}, spatial_op="rot90")
    procrustes = tiny.fit("rot90", "procrustes")
    assert procrustes["spatial_op"] == "rot90"  # spatial_first: true in the tiny config
    assert tiny.fit("noise", "procrustes")["spatial_op"] is None  # not geometric
    assert tiny.fit("rot90", "ridge")["settings"]["gamma"] == 1.0


def test_edit_cells_inputs_and_figures_follow_the_edits_section(tiny):
    # the trained linear map only where trained_subset fits it (rot90, layer3); ridge everywhere
    assert tiny.edit_cells() == {
        ("cnn", "layer3", "rot90"): ["ridge", "linear"],
        ("cnn", "layer3", "swap_class"): ["ridge"],
        ("vit", "blocks.1", "rot90"): ["ridge"],
        ("vit", "blocks.1", "swap_class"): ["ridge"],
    }
    inputs = tiny.edit_inputs("cnn", "layer3", "rot90")
    assert inputs["map_linear"] == tiny.map_file("cnn", "layer3", "rot90", "linear")
    assert inputs["featinv"] == f"{tiny.featinv('cnn', 'layer3')}/model"
    assert tiny.edit_inputs("vit", "blocks.1", "rot90")["featinv"] == []  # no FeatInv model
    # a strip where the layer is inverted, the probability figure, a metrics file per cell
    strips = [tiny.figure("edits", "cnn", "layer3", m) for m in ("rot90", "swap_class")]
    lenses = [tiny.figure("edit_lenses", "cnn", "layer3", m) for m in ("rot90", "swap_class")]
    assert tiny.edit_figures() == [*strips, *lenses, tiny.figure("edit_probability")]
    # the other backbone reads the two lenses for transfer, as its own store was read
    assert tiny.edit_readers("cnn") == {"vit": tiny.backbone("vit")}
    assert inputs["reader_store_vit"] == tiny.features("vit", "original")
    assert inputs["reader_weights_vit"] == tiny.weights("vit")
    assert "budgets" not in tiny.edit_lens()
    assert set(tiny.edit_figures()) <= set(tiny.figures())
    edits = {tiny.edit(*cell, "metrics.json") for cell in tiny.edit_cells()}
    assert edits <= set(tiny.metrics_files())
    assert (
        tiny.log(tiny.edit("cnn", "layer3", "rot90"))
        == "results/tiny/logs/edits/cnn/layer3/rot90.log"
    )
    assert set(tiny.settings("edits")) == {
        "alphas",
        "ranks",
        "n_images",
        "invert_images",
        "direction_images",
        "seed",
        "lens_budget",
        "batch_size",
    }
    # without edits.manipulations (the default) the stage plans nothing
    none = _plan(lambda c: c.pop("edits"))
    assert none.edit_cells() == {}
    assert none.edit_figures() == []


def test_the_optimiser_inverts_its_own_subset_beside_featinv(tiny):
    # layer2 has no FeatInv model: the optimiser alone, with the floor and ceiling rows
    assert tiny.optimise_cells() == {
        ("cnn", "layer2", "rot90"): ["identity", "ridge"],  # linear trains on layer3 only
        ("cnn", "layer3", "rot90"): ["identity", "linear", "ridge"],
    }
    assert tiny.optimise_baselines("cnn", "layer2")
    assert not tiny.optimise_baselines("cnn", "layer3")
    assert set(tiny.reconstructions("cnn", "layer2", "rot90")) == {
        "optimised_references",
        "optimised_identity",
        "optimised_ridge",
    }
    assert tiny.figure("inverters") in tiny.figures()
    assert "layers" not in tiny.settings("featinv.optimise")

    def subset(config):
        config["featinv"]["optimise"].update(mappings=["ridge"], n_images=2)

    small = _plan(subset)
    assert list(small.optimise_cells().values()) == [["ridge"], ["ridge"]]
    assert small.optimise_invert()["n_images"] == 2
    assert small.settings("featinv.invert")["n_images"] == 4  # FeatInv's own
    assert small.featinv_cells() == tiny.featinv_cells()


def test_settings_hold_the_fields_of_their_dataclass(tiny):
    assert "images_per_shard" not in tiny.extraction("cnn")
    assert set(tiny.settings("lens")) >= {"budgets", "warp"}
    assert not set(tiny.settings("lens")) & {"cases", "backbones"}
    assert tiny.mapping_settings("procrustes") == {"block_images": 256}  # not spatial_first
    assert tiny.spatial_first_of("rot90", "procrustes") == "rot90"
    assert tiny.spatial_first_of("rot90", "ridge") is None
    assert set(tiny.backbone("cnn")) == {
        "model",
        "model_args",
        "weights",
        "weights_path",
        "hub_id",
        "layers",
    }
    assert tiny.backbone_train("cnn")["epochs"] == 1
    assert tiny.analysis()["std_floor"] == tiny.config["featmap"]["training"]["std_floor"]


def test_reordered_keys_plan_the_same_study():
    reordered = _plan(lambda c: c.update(dict(reversed(list(c.items())))))
    assert list(reordered.config) == sorted(reordered.config)
    assert reordered.metrics_files() == _plan().metrics_files()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["featinv"].update(layers={"cnn": ["layer9"]}), "featinv.layers: cnn"),
        (lambda c: c["featinv"]["invert"].update(manipulations=["melt"]), "featinv.invert."),
        (
            lambda c: c["featinv"]["optimise"].update(layers={"cnn": ["layer9"]}),
            "featinv.optimise.layers: cnn",
        ),
        (
            lambda c: c["featinv"]["optimise"].update(mappings=["warp"]),
            "featinv.optimise.mappings: ['warp']",
        ),
        (lambda c: c["lens"].update(backbones=["resnet"]), "lens.backbones: ['resnet']"),
        (lambda c: c["filters"].update(backbones=["resnet"]), "filters.backbones: ['resnet']"),
        (lambda c: c["lens"].update(cases=[{"source": "cat", "target": "square"}]), "lens.cases"),
        (lambda c: c["featinv"]["model"].update(patch_size=3), "featinv.model.patch_size"),
        (lambda c: c["manipulations"]["noise"].update(sigma=0), "manipulations.noise: "),
        (lambda c: c["edits"].update(manipulations=["melt"]), "edits.manipulations: ['melt']"),
        (lambda c: c["edits"].update(layers={"cnn": ["layer9"]}), "edits.layers: cnn"),
        (lambda c: c["edits"].update(invert_images=99), "edits.invert_images=99"),
        (lambda c: c["edits"].update(mappings=["linear"]), "edits.mappings: none of"),
    ],
)
def test_a_cross_key_error_stops_planning_naming_the_key(edit, message):
    with pytest.raises(ValueError, match=message.replace(".", r"\.").replace("[", r"\[")):
        _plan(edit)


def test_a_backbone_check_names_the_backbone():
    def unknown(config):
        config["backbones"]["cnn"]["layers"] = ["layer9"]

    with pytest.raises(ValueError, match=r"backbones\.cnn"):
        _plan(unknown, backbones=True)


def test_auto_devices_ask_for_a_gpu_where_there_is_one(monkeypatch):
    monkeypatch.setattr(study_module.plan, "gpu_present", lambda: True)
    assert (gpus("auto"), gpus("cuda"), gpus("cpu")) == (1, 1, 0)
    monkeypatch.setattr(study_module.plan, "gpu_present", lambda: False)
    assert (gpus("auto"), gpus("cuda"), gpus("cpu")) == (0, 1, 0)


def test_the_code_hash_follows_the_script(tiny):
    assert tiny.code("plot_cosine") != tiny.code("plot_lens")
    assert len(tiny.code("extract")) == 16
