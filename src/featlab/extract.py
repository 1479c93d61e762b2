"""Feature extraction: one backbone, one range of an image set, all configured layers in one pass.

The work overlaps in three places: DataLoader workers read and preprocess the next batches, the
model runs the current one, and a writer thread converts, checks and writes the previous one to
Zarr. On CUDA the batches travel from pinned memory with non-blocking copies, and the forward pass
can run under bf16 or fp16 autocast, in channels_last and compiled.
"""

import collections
import concurrent.futures
import contextlib
import dataclasses
import math
import os

import featlab._compat  # defines torchvision op schemas before timm

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

import featlab
from featlab import metrics
from featlab.backbones import (
    BackboneSpec,
    capture_layers,
    data_config,
    preprocess,
    to_grid,
    token_counts,
)
from featlab.data.images import ImageStore
from featlab.devices import PRECISIONS, autocast, resolve_device
from featlab.store import FeatureStore, FeatureStoreWriter
from featlab.tables import metric_row
from featlab.workers import START_METHOD, main_script_hidden


@dataclasses.dataclass(frozen=True)
class ExtractSettings:
    """How to run the forward passes and store their outputs."""

    batch_size: int = 128  # images per forward pass
    dtype: str = "float16"  # storage dtype of the feature arrays; float32 if values overflow
    input_size: int | None = None  # resize images to this side first; None keeps the store's
    threads: int = 1  # torch CPU threads (a job's threads in Snakemake); 0 keeps torch's default
    device: str = "cpu"  # cpu | cuda | auto
    precision: str = "float32"  # autocast dtype of the forward pass: float32 | bfloat16 | float16
    channels_last: bool = False  # memory format of the model and its inputs
    compile: bool = False  # torch.compile the model (pays off on long CUDA runs)
    workers: int = 0  # DataLoader processes reading and preprocessing images; 0 reads in-process
    zarr_shard_chunks: int | None = None  # chunks per Zarr shard along N; None: no sharding codec
    compression: str = "zstd"  # codec of the feature chunks: zstd | none

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"extraction.precision must be one of {list(PRECISIONS)}")


class ImageBatches(torch.utils.data.Dataset):
    """Batch b of the images [start, stop) of an image store, read and preprocessed.

    Each DataLoader worker opens the store itself: a Zarr group is not shared across processes.
    """

    def __init__(self, path, start: int, stop: int, batch_size: int, config: dict, size):
        self.path, self.start, self.stop = str(path), start, stop
        self.batch_size, self.config, self.size = batch_size, config, size
        self._images = None

    def __len__(self) -> int:
        return math.ceil((self.stop - self.start) / self.batch_size)

    def __getitem__(self, batch: int) -> torch.Tensor:
        if self._images is None:
            self._images = ImageStore(self.path).images
        first = self.start + batch * self.batch_size
        pixels = self._images[first : min(first + self.batch_size, self.stop)]
        return preprocess(pixels, self.config, self.size)


def _single_thread(_worker: int) -> None:
    torch.set_num_threads(1)  # the workers share the machine with the forward pass


def batch_loader(dataset: ImageBatches, workers: int, pin_memory: bool):
    """Batches in order, read by `workers` spawned processes (see featlab.workers); iterate it
    inside `featlab.workers.main_script_hidden`."""
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=None,  # each item is already a batch
        num_workers=workers,
        multiprocessing_context=START_METHOD if workers else None,
        worker_init_fn=_single_thread if workers else None,
        prefetch_factor=2 if workers else None,
        pin_memory=pin_memory,
    )


def forward_layers(
    model: nn.Module, layers: tuple[str, ...], x: torch.Tensor, logits: bool = True
) -> dict[str, torch.Tensor]:
    """One batch through the model: each layer's raw output, and the logits when asked.

    Without logits the pass stops as soon as every layer has run, so the later stages and the
    head cost nothing.
    """
    with torch.inference_mode(), capture_layers(model, layers, stop=not logits) as outputs:
        if logits:
            outputs["logits"] = model(x)
        else:
            model(x)
    return outputs


def as_arrays(
    model: nn.Module, outputs: dict[str, torch.Tensor], input_size: tuple[int, int]
) -> dict[str, np.ndarray]:
    """Layer outputs as float32 (B, C, H, W) grids, class and register tokens apart, and logits.

    `input_size` (height, width) of the images places the tokens of a model whose grid follows
    its input (see `featlab.backbones.to_grid`).
    """
    n_class, _ = token_counts(model)
    batch = {}
    for name, output in outputs.items():
        if name == "logits":
            batch[name] = output.float().cpu().numpy()
            continue
        maps, prefix = to_grid(model, output, tuple(input_size))
        batch[name] = maps.float().cpu().numpy()
        if prefix is not None:
            prefix = prefix.float().cpu().numpy()
            batch[f"class_tokens/{name}"] = prefix[:, :n_class]
            if prefix.shape[1] > n_class:
                batch[f"register_tokens/{name}"] = prefix[:, n_class:]
    return batch


def _prepare(model: nn.Module, settings: ExtractSettings, device: torch.device) -> nn.Module:
    model = model.to(device).eval()
    if settings.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if settings.compile:
        model = torch.compile(model)
    return model


def extract_features(
    model: nn.Module,
    spec: BackboneSpec,
    images: ImageStore,
    path: str | os.PathLike,
    settings: ExtractSettings,
    provenance: dict,
    image_range: tuple[int, int] | None = None,
) -> None:
    """Write the features of the images [start, stop) of `images` to a feature store at `path`.

    `image_range` defaults to every image; a shard's range is recorded in the store's
    attributes, so that `featlab.store.gather_shards` can join the shards in order. `provenance`
    (weights sha256 and source, for example) joins the store's attributes.
    """
    import timm  # here: a job that gathers shards imports this module but never builds a model

    # 1. Prepare the model on its device and find the output shapes from one image.
    start, stop = image_range or (0, len(images))
    if not 0 <= start <= stop <= len(images):
        raise ValueError(f"image range [{start}, {stop}) is outside the {len(images)} images")
    if settings.threads:
        torch.set_num_threads(settings.threads)
    device = resolve_device(settings.device, "extraction.device")
    config = data_config(model)
    size = settings.input_size
    first = preprocess(images.images[:1], config, size)
    probe = as_arrays(model, forward_layers(model, spec.layers, first), first.shape[-2:])
    shapes = {name: values.shape[1:] for name, values in probe.items()}
    attrs = {
        "featlab_version": featlab.__version__,
        "timm_version": timm.__version__,
        "model": spec.model,
        "spec": spec.to_dict(),
        "pretrained_cfg": dict(getattr(model, "pretrained_cfg", {}) or {}),
        "preprocessing": {**config, "input_size": size or images.image_size[0]},
        "image_store": str(images.path),
        "image_range": [start, stop],
        **provenance,
    }
    runner = _prepare(model, settings, device)

    # 2. Read, forward and write side by side: workers preprocess ahead, a thread writes behind.
    loader = batch_loader(
        ImageBatches(images.path, start, stop, settings.batch_size, config, size),
        settings.workers,
        pin_memory=device.type == "cuda",
    )
    writer = FeatureStoreWriter(
        path,
        stop - start,
        {layer: shapes[layer] for layer in spec.layers},
        shapes["logits"][0],
        settings.dtype,
        {name: shape for name, shape in shapes.items() if "/" in name},
        attrs,
        settings.zarr_shard_chunks,
        settings.compression,
    )
    progress = tqdm(total=stop - start, desc=f"extract {spec.model}", unit="img")
    with writer, progress, _writing(writer, background=device.type == "cuda") as write:
        with main_script_hidden():
            batches = iter(loader)  # starts the workers
        for x in batches:
            x = x.to(device, non_blocking=True)
            if settings.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device, settings.precision):
                outputs = forward_layers(runner, spec.layers, x)
            write(as_arrays(model, outputs, x.shape[-2:]))
            progress.update(len(x))


@contextlib.contextmanager
def _writing(writer: FeatureStoreWriter, background: bool):
    """A function that writes a batch: in a thread behind the forward pass while a GPU computes,
    inline on the CPU, whose cores the forward pass already uses (a writer thread beside it
    would only preempt its threads, measured slower in bench/bench_extract_pipeline.py)."""
    if not background:
        yield writer.append
        return
    pending = collections.deque()

    def write(batch: dict[str, np.ndarray]) -> None:
        pending.append(thread.submit(writer.append, batch))
        while len(pending) > 2:  # at most two batches wait to be written
            pending.popleft().result()

    with concurrent.futures.ThreadPoolExecutor(1) as thread:
        yield write
        for job in pending:
            job.result()  # a failed write raises here, and the writer removes the store


def classifier_rows(
    store: str | os.PathLike, images: ImageStore, backbone: str, imageset: str
) -> list[dict]:
    """Top-1 accuracy of the backbone's logits on each split of an image set.

    Rows of the original set have an empty `manipulation`; manipulated sets name theirs.
    """
    logits = FeatureStore(store).logits[:]
    base = dict(backbone=backbone, manipulation="" if imageset == "original" else imageset)
    rows = []
    for split in ("train", "val", "test"):
        chosen = images.indices(split)
        if len(chosen):
            value = metrics.top1_accuracy(logits[chosen], images.labels[chosen])
            rows.append(
                metric_row("classifier", "top1_accuracy", value, len(chosen), split=split, **base)
            )
    return rows
