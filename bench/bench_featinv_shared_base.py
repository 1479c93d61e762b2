"""FeatInv on a shared base: one scratch UNet trained once on the images, frozen under each
backbone's ControlNet, against the study's joint training of UNet and ControlNet per backbone.

Issue 21's item 4 names this option: FeatInv's recipe with a pretrained base (only the ControlNet
and the hint block train) where the base is the study's own scratch UNet, trained once on the
train images without features and shared by every backbone. It can only pay if the frozen base's
ControlNet steps are cheaper than joint steps, or fewer of them reach the same quality. Three
commands, each through the workflow's own model, noise schedule, draws and scoring:

- `base`: train the scratch UNet alone (the study's `featinv.model` and `featinv.train` recipe,
  the hint never present, the prompt dropped at the recipe's `drop_prob` as joint training drops
  it with the hint); save it at each of `--steps` to `--out/{step}` (a diffusers `unet/` folder).
- `steps`: time joint steps (the study's), frozen-base steps and base steps on one backbone
  layer, in one run.
- `control`: train one backbone layer's ControlNet and hint block on the frozen base and, at
  each of `--score-at` steps, invert the first `--images` test images of
  `--manipulation` as the inversion rows do (`featinv.evaluate.invert_references`, the study's
  sampler) and print the reconstructions' scores, beside the study's trained model's.

Run after the study has trained its FeatInv models, from the repository root:

    OMP_NUM_THREADS=2 python bench/bench_featinv_shared_base.py base --steps 2400 --out /tmp/base
    OMP_NUM_THREADS=1 python bench/bench_featinv_shared_base.py steps --base /tmp/base/2400
    OMP_NUM_THREADS=1 python bench/bench_featinv_shared_base.py control --base /tmp/base/2400 \
        --backbone cnn --layer layer4 --score-at 800 1600 2400
"""

import argparse
import copy
import dataclasses
import functools
import json
import time
from pathlib import Path

import featlab._compat  # noqa: F401  (defines torchvision op schemas before diffusers)

import torch
import torch.nn.functional as F
import yaml
from bench_inverters import open_cell, run, sampling_settings
from diffusers import ControlNetModel, DDPMScheduler, UNet2DConditionModel

from featlab.featinv import evaluate
from featlab.featinv.model import FeatInvModel, ModelSettings, build_model
from featlab.featinv.sample import sample
from featlab.featinv.train import TrainSettings, _train_step, load_training_data, step_draws
from featlab.store import FeatureStore
from featlab.study.settings import settings_of


@dataclasses.dataclass
class StudyFiles:
    """The default study's FeatInv settings and result paths."""

    config: dict
    results: Path
    model: ModelSettings
    train: TrainSettings

    @classmethod
    def read(cls, path: str) -> "StudyFiles":
        config = yaml.safe_load(Path(path).read_text())
        featinv = config.get("featinv", {})
        train = TrainSettings(**settings_of(TrainSettings, featinv.get("train", {})), device="cpu")
        model = ModelSettings(**featinv.get("model", {}))
        return cls(config, Path("results") / config["study"], model, train)

    def features(self, backbone: str) -> Path:
        return self.results / "features" / backbone / "original.zarr"

    def images(self, name: str = "original") -> Path:
        return self.results / "images" / f"{name}.zarr"


def frozen_base_model(study: StudyFiles, base: UNet2DConditionModel, channels: int) -> FeatInvModel:
    """The study's model for `channels`-channel features, its UNet replaced by the frozen base and
    its ControlNet copied from the base's encoder (as `build_model` does for a pretrained base)."""
    model = build_model(study.model, channels)  # the same seed: the same prompt embedding
    model.unet = copy.deepcopy(base)
    model.controlnet = ControlNetModel.from_unet(
        model.unet, conditioning_embedding_out_channels=(16,)
    )
    model.controlnet.controlnet_cond_embedding = torch.nn.Identity()
    model.train_unet = False
    model.unet.requires_grad_(False)
    return model


def adamw(model: FeatInvModel, settings: TrainSettings) -> torch.optim.AdamW:
    """The workflow's optimiser over the model's trainable parameters."""
    return torch.optim.AdamW(
        model.trainable_parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )


def train_steps(
    model: FeatInvModel, data, settings: TrainSettings, optimiser, start: int, stop: int
) -> float:
    """Run training steps [start, stop) through the workflow's step; returns their seconds."""
    noise = DDPMScheduler.from_config(model.noise_config)
    model.train()
    if not model.train_unet:
        model.unet.eval()
    begin = time.perf_counter()
    for step in range(start, stop):
        _train_step(model, data, settings, noise, optimiser, step, torch.device("cpu"))
    return time.perf_counter() - begin


def base_step(model: FeatInvModel, data, settings: TrainSettings, noise, optimiser, step: int):
    """One training step of the UNet alone: step k's draws of the recipe, no hint, the prompt
    dropped where joint training drops the hint and the prompt together."""
    batch, eps, t, _, prompt_keep = step_draws(settings, step, data.targets.shape, noise)
    clean = data.targets[batch]
    noisy = noise.add_noise(clean, eps, t)
    target = {"epsilon": eps, "sample": clean}[noise.config.prediction_type]
    text = model.embeddings(prompt_keep).expand(len(batch), -1, -1)
    loss = F.mse_loss(model.unet(noisy, t, encoder_hidden_states=text).sample, target)
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()


def base_trainer(study: StudyFiles, backbone: str, layer: str):
    """The scratch model, its training data and a function running base steps [start, stop).

    Only the targets of the training data are used; any backbone's store reads the same images.
    """
    channels = FeatureStore(study.features(backbone)).layer(layer).shape[1]
    model = build_model(study.model, channels)
    data = load_training_data(study.features(backbone), study.images(), layer, model)
    noise = DDPMScheduler.from_config(model.noise_config)
    optimiser = torch.optim.AdamW(
        model.unet.parameters(), lr=study.train.lr, weight_decay=study.train.weight_decay
    )
    model.unet.train()

    def run(start: int, stop: int) -> float:
        begin = time.perf_counter()
        for step in range(start, stop):
            base_step(model, data, study.train, noise, optimiser, step)
        return time.perf_counter() - begin

    return model, run


def train_base(study: StudyFiles, steps: list[int], out: Path, backbone: str, layer: str) -> None:
    """Train the scratch UNet alone on the train images; save it at each of `steps` steps to
    `out/{step}/unet`."""
    model, run = base_trainer(study, backbone, layer)
    done, seconds = 0, 0.0
    for stop in sorted(steps):
        seconds += run(done, stop)
        done = stop
        model.unet.save_pretrained(out / str(stop) / "unet")
        print(json.dumps({"base_steps": stop, "seconds": round(seconds, 1)}), flush=True)


def time_steps(
    study: StudyFiles, base: UNet2DConditionModel, backbone: str, layer: str, n: int
) -> None:
    """Seconds per step of joint training, of frozen-base training and of the base alone, in one
    run."""
    channels = FeatureStore(study.features(backbone)).layer(layer).shape[1]
    print(f"{backbone} {layer}, {torch.get_num_threads()} thread(s), {n} timed steps")
    rates = {}
    for label, model in (
        ("joint (the study's)", build_model(study.model, channels)),
        ("frozen shared base", frozen_base_model(study, base, channels)),
    ):
        data = load_training_data(study.features(backbone), study.images(), layer, model)
        optimiser = adamw(model, study.train)
        train_steps(model, data, study.train, optimiser, 0, 2)  # warm-up
        rates[label] = train_steps(model, data, study.train, optimiser, 2, 2 + n) / n
        ratio = rates["joint (the study's)"] / rates[label]
        print(f"{label:>20}: {rates[label]:.3f} s/step, {ratio:.2f}x the joint step's speed")
    _, run = base_trainer(study, backbone, layer)
    run(0, 2)  # warm-up
    seconds = run(2, 2 + n) / n
    ratio = rates["joint (the study's)"] / seconds
    print(f"{'the base alone':>20}: {seconds:.3f} s/step, {ratio:.2f}x the joint step's speed")


def train_control(study: StudyFiles, base: UNet2DConditionModel, args) -> None:
    """Train one layer's ControlNet on the frozen base; score it at the chosen steps."""
    channels = FeatureStore(study.features(args.backbone)).layer(args.layer).shape[1]
    model = frozen_base_model(study, base, channels)
    optimiser = adamw(model, study.train)
    data = load_training_data(study.features(args.backbone), study.images(), args.layer, model)
    if model.hint.config.normalise:
        model.hint.set_statistics(data.features)
    score = scorer(study, args)
    report = {"cell": [args.backbone, args.layer, args.manipulation], "images": args.images}
    report[f"study's model (joint, {study.train.steps} steps)"] = score(None)
    done, seconds = 0, 0.0
    for stop in sorted(args.score_at):
        seconds += train_steps(model, data, study.train, optimiser, done, stop)
        done = stop
        report[f"frozen base, {stop} steps"] = {"train_seconds": round(seconds, 1), **score(model)}
        print(json.dumps(report, indent=2), flush=True)


def scorer(study: StudyFiles, args):
    """A function scoring a FeatInv model (None: the study's) on the first test images, as
    `bench_inverters.py` scores FeatInv: the rows of `featinv.evaluate.invert_references`."""
    backbone, stores = open_cell(study.config, args.backbone, args.manipulation)
    sampling = sampling_settings(study.config)
    trained = study.results / "featinv" / args.backbone / args.layer / "model"
    inverter, inputs, _ = evaluate.open_inversion(
        trained, backbone, args.layer, stores, sampling, args.images
    )
    cell = dict(backbone=args.backbone, layer=args.layer, manipulation=args.manipulation)

    def score(model: FeatInvModel | None) -> dict:
        if model is None:
            return run(inverter, inputs, cell)
        model.prompt_drop_prob = study.train.prompt_drop_prob
        reconstruct = functools.partial(sample, model, settings=sampling)
        return run(dataclasses.replace(inverter, reconstruct=reconstruct), inputs, cell)

    return score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["base", "steps", "control"])
    parser.add_argument("--config", default="config.yaml")
    parser.add_argument("--base", type=Path, help="folder of the trained base (unet/)")
    parser.add_argument("--out", type=Path, help="base: where to save the trained UNet")
    parser.add_argument("--steps", type=int, nargs="+", default=[2400], help="base: save at each")
    parser.add_argument("--backbone", default="cnn")
    parser.add_argument("--layer", default="layer4")
    parser.add_argument("--manipulation", default="rot90")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--score-at", type=int, nargs="+", default=[800, 1600, 2400])
    args = parser.parse_args()
    study = StudyFiles.read(args.config)
    if args.command == "base":
        train_base(study, args.steps, args.out, args.backbone, args.layer)
        return
    base = UNet2DConditionModel.from_pretrained(args.base / "unet")
    if args.command == "steps":
        time_steps(study, base, args.backbone, args.layer, n=10)
    else:
        train_control(study, base, args)


if __name__ == "__main__":
    main()
