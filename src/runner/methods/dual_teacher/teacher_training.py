"""Train a teacher (or the student-alone reference) with the supervised video module when its
checkpoint is absent (issue 3, item 6: "the distillation experiment trains them first").

The network is trained by :class:`runner.methods.video_supervised.VideoClassifier` — the same
module as the ``video_supervised_*`` experiments — on the run's own data (a shallow copy of its
datamodule), reading the batch key of the teacher's view. The weights go to
``<cache_dir>/<hash>.pt`` where the hash covers the network spec, the recipe, the data identity
(root, the twin's recipe hash, clip list) and the view geometry, so a changed twin or recipe
trains a new teacher and an unchanged one is reused by every later run (and every seed).
The file is written atomically; the global RNG state is restored afterwards so a run's student
sees the same random stream whether or not a teacher had to be trained.

Pretraining on another dataset, then fine-tuning (the paper's teachers are Kinetics-pretrained):
:func:`ensure_pretrained_then_trained` first trains the network on a second datamodule (e.g. the
Kinetics-400 twin, with its own classes) with its own recipe, cached like any teacher, then builds
the network for the run's classes, loads the pretrained weights except the classifier (a new one
for the run's classes) and fine-tunes it on the run's data. The fine-tuned checkpoint's key includes the pretrained
checkpoint's key, so a changed pretraining retrains both.

Debug modes: the Trainer comes from :func:`runner.nested.nested_trainer`, which applies the outer
run's debug limits (``debug=fdr``: one batch), and those limits join the cache key, so a
one-batch teacher is never reused by a full run.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from runner.checkpointing import AtomicCheckpointIO
from runner.distributed import train_once
from runner.methods.video_supervised import VideoClassifier
from runner.nested import debug_limits, nested_trainer
from runner.utils import isolated_rng

from .cache import stable_hash, transform_description

log = logging.getLogger(__name__)


def describe_callable(obj: Any) -> Any:
    """A JSON-able description of a (partial) constructor, for hashing."""
    if isinstance(obj, functools.partial):
        return {
            "target": f"{obj.func.__module__}.{obj.func.__qualname__}",
            "args": [describe_callable(a) for a in obj.args],
            "kwargs": {k: describe_callable(v) for k, v in sorted(obj.keywords.items())},
        }
    if isinstance(obj, Mapping):
        return {str(k): describe_callable(v) for k, v in sorted(obj.items())}
    if isinstance(obj, list | tuple):
        return [describe_callable(v) for v in obj]
    if callable(obj) and hasattr(obj, "__qualname__"):
        return f"{obj.__module__}.{obj.__qualname__}"
    return obj


def data_identity(datamodule: Any) -> dict[str, Any]:
    """What identifies the training data: root, twin recipe hash, clip lists, train transform."""
    root = str(getattr(datamodule, "root_used", ""))
    recipe = None
    try:
        recipe = json.loads((Path(root) / "recipe.json").read_text()).get("hash")
    except (OSError, ValueError):
        pass
    train = datamodule.dataset("train")
    test = datamodule.dataset("test")
    return {
        "root": root,
        "twin_recipe": recipe,
        "train_clips": stable_hash([r.clip_id for r in train.records]),
        "test_clips": stable_hash([r.clip_id for r in test.records]),
        "transform": transform_description(train),
        "num_classes": int(datamodule.num_classes),
    }


class _ViewClassifier(VideoClassifier):
    """:class:`VideoClassifier` reading ``batch[input_key]`` as its clip."""

    def __init__(self, *args: Any, input_key: str = "video", **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.input_key = input_key

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.input_key != "video" and isinstance(batch, dict) and self.input_key in batch:
            batch = {**batch, "video": batch[self.input_key]}
        return batch


def train_supervised(
    net: nn.Module,
    datamodule: Any,
    num_classes: int,
    input_key: str,
    optimizer: Callable[..., torch.optim.Optimizer],
    scheduler: Callable[..., Any] | None,
    max_epochs: int,
    gradient_clip_val: float | None = None,
    limit_train_batches: int | float | None = None,
    seed: int = 0,
    name: str = "network",
    lower_key: str | None = None,
) -> float:
    """Train ``net`` in place with cross-entropy; return its test top-1 accuracy. ``lower_key``: the
    config key of ``optimizer``'s lr, named if the training diverges (:func:`runner.nested.nested_trainer`)."""
    dm = copy.copy(datamodule)  # own ``trainer`` attribute; shares the readers and datasets
    module = _ViewClassifier(
        net, num_classes=num_classes, optimizer=optimizer, scheduler=scheduler, input_key=input_key
    )
    with isolated_rng(seed):
        trainer = nested_trainer(
            name,
            lower_key=lower_key,
            max_epochs=int(max_epochs),
            accelerator="auto",
            limit_val_batches=0,
            limit_train_batches=limit_train_batches,
            limit_test_batches=limit_train_batches,
            gradient_clip_val=gradient_clip_val,
        )
        with warnings.catch_warnings():  # the view remapping is meant to override the datamodule's hook
            warnings.filterwarnings("ignore", message=".*on_after_batch_transfer.*")
            trainer.fit(module, datamodule=dm)
            results = trainer.test(module, datamodule=dm, verbose=False)
    net.eval()
    return float(results[0].get("test/acc", float("nan"))) if results else float("nan")


def load_pretrained_backbone(net: nn.Module, path: str | os.PathLike) -> None:
    """Load a pretrained checkpoint of this cache (``{"state_dict", "meta"}``) into ``net``, all but
    its classifier (``net._head_prefixes``, default ``classifier.``): the classifier of the
    pretraining's classes is dropped even when the class counts agree, and ``net``'s own freshly
    initialised one is fine-tuned."""
    payload = torch.load(path, map_location="cpu", weights_only=True)
    heads = tuple(getattr(net, "_head_prefixes", ("classifier.",)))
    state = {k: v for k, v in payload["state_dict"].items() if not k.startswith(heads)}
    missing, unexpected = net.load_state_dict(state, strict=False)
    stray = [k for k in missing if not k.startswith(heads)] + list(unexpected)
    if stray:
        raise RuntimeError(f"pretrained checkpoint {path} does not match {type(net).__name__}: {stray[:5]}")
    log.info("loaded %d pretrained tensors (classifier re-initialised) from %s", len(state), path)


def checkpoint_path(
    spec: Any,
    datamodule: Any,
    input_key: str,
    recipe: Mapping[str, Any],
    cache_dir: str | os.PathLike,
    init: str | os.PathLike | None = None,
) -> Path:
    """Where the network ``spec`` trained with ``recipe`` on this data is cached (the run's debug
    limits, when there are any, are part of the key; so is the key of the ``init`` checkpoint a
    fine-tuning starts from)."""
    content = {
        "net": describe_callable(spec),
        "recipe": describe_callable(dict(recipe)),
        "data": data_identity(datamodule),
        "input_key": input_key,
    }
    if init is not None:
        content["init"] = Path(init).stem
    limits = debug_limits()
    if limits:
        content["debug_limits"] = limits
    return Path(cache_dir) / f"{stable_hash(content)[:24]}.pt"


def ensure_trained(
    name: str,
    build: Callable[[], nn.Module],
    spec: Any,
    datamodule: Any,
    num_classes: int,
    input_key: str,
    recipe: Mapping[str, Any],
    cache_dir: str | os.PathLike,
    lower_key: str | None = None,
    init: str | os.PathLike | None = None,
) -> tuple[Path, dict[str, Any]]:
    """The checkpoint of the network ``spec`` trained with ``recipe`` on this data, training it
    (and saving ``{"state_dict", "meta"}``) if it is not cached yet. Returns ``(path, meta)``.
    ``lower_key``: the config key of the recipe's lr (named if the training diverges).
    ``init``: a checkpoint of this cache the network starts from, all but its classifier
    (:func:`load_pretrained_backbone`), i.e. a fine-tuning."""
    path = checkpoint_path(spec, datamodule, input_key, recipe, cache_dir, init)
    key = path.stem
    if path.is_file():
        payload = torch.load(path, map_location="cpu", weights_only=True)
        log.info("%s: using cached checkpoint %s", name, path)
        return path, dict(payload.get("meta", {}))
    # under DDP rank 0 trains it outside the process group and the other ranks wait for the file
    # (runner.distributed: a nested Trainer inside the group deadlocks on its collectives)
    with train_once(path, name) as train:
        if train:
            log.info("%s: no checkpoint yet, training it with the supervised recipe (%s)", name, path)
            started = time.time()
            with isolated_rng(int(recipe.get("seed", 0))):  # its init draws no number from the run's stream
                net = build()
            if init is not None:
                load_pretrained_backbone(net, init)
            acc = train_supervised(
                net,
                datamodule,
                num_classes,
                input_key,
                recipe["optimizer"],
                recipe.get("scheduler"),
                int(recipe["max_epochs"]),
                recipe.get("gradient_clip_val"),
                recipe.get("limit_train_batches"),
                int(recipe.get("seed", 0)),
                name,
                lower_key,
            )
            meta = {
                "name": name,
                "test_acc": acc,
                "train_seconds": round(time.time() - started, 1),
                "key": key,
                "init": None if init is None else str(init),
            }
            AtomicCheckpointIO().save_checkpoint({"state_dict": net.state_dict(), "meta": meta}, path)
            log.info("%s: trained in %.0fs, test acc %.3f -> %s", name, meta["train_seconds"], acc, path)
            return path, meta
    payload = torch.load(path, map_location="cpu", weights_only=True)
    log.info("%s: using the checkpoint rank 0 trained, %s", name, path)
    return path, dict(payload.get("meta", {}))


def pretraining_recipe(recipe: Mapping[str, Any], pretrain: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe of a pretraining: the teacher recipe with the ``pretrain`` block's own values
    (``max_epochs``, ``optimizer``, ``scheduler``, ...) laid over it; ``data`` is not a recipe value."""
    return {**dict(recipe), **{k: v for k, v in pretrain.items() if k != "data"}}


def ensure_pretrained_then_trained(
    name: str,
    build: Callable[[int], nn.Module],
    spec: Any,
    pretrain: Mapping[str, Any],
    datamodule: Any,
    num_classes: int,
    input_key: str,
    recipe: Mapping[str, Any],
    cache_dir: str | os.PathLike,
    lower_key: str | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Pretrain the network ``spec`` on ``pretrain["data"]`` (its own classes, the pretraining
    recipe), then fine-tune it on ``datamodule`` with ``recipe``; both cached (module docstring).

    ``build(num_classes)`` builds the network. Returns the fine-tuned ``(path, meta)``; ``meta``
    adds the pretraining's test accuracy on its own data (``pretrain_test_acc``).
    """
    data = pretrain["data"]
    pre_classes = int(data.num_classes)
    pre_path, pre_meta = ensure_trained(
        f"{name} pretraining",
        lambda: build(pre_classes),
        spec,
        data,
        pre_classes,
        input_key,
        pretraining_recipe(recipe, pretrain),
        cache_dir,
        lower_key,
    )
    path, meta = ensure_trained(
        name,
        lambda: build(num_classes),
        spec,
        datamodule,
        num_classes,
        input_key,
        recipe,
        cache_dir,
        lower_key,
        init=pre_path,
    )
    return path, {**meta, "pretrain_test_acc": pre_meta.get("test_acc"), "pretrain_checkpoint": str(pre_path)}
