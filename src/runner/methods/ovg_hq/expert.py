"""The frozen segment+text expert of cross-modal distillation (card ``ovg_hq.md``: "from a frozen
expert trained on segment+text queries").

``distill.expert_checkpoint`` names a local file (a ``state_dict`` of the network, or ``{"state_dict"}``;
loaded with ``weights_only=True``). When it is null the expert is trained first — like the dual-teacher
teachers (:mod:`runner.methods.dual_teacher.teacher_training`) — with :class:`.module.OVGHQModule`
itself on the ``expert_condition`` queries only, without distillation, on the run's data module, in a
nested Trainer seeded with ``expert_training.seed`` (the outer RNG state is restored afterwards). The
weights go to ``<cache_dir>/<hash>.pt``; the hash covers the architecture, the recipe, the data's
identity (root, twin recipe hash, training chunks) and the debug mode, so a smoke run never writes
an expert a real run would reuse; a file lock makes parallel sweep jobs train it once. The nested training follows the run's debug mode: under
``debug=fdr`` (``fast_dev_run``) it runs one batch; ``limit_train_batches`` carries over too.
"""

from __future__ import annotations

import copy
import fcntl
import json
import logging
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from runner.checkpointing import AtomicCheckpointIO
from runner.errors import UserError
from runner.methods.dual_teacher.cache import sha256_file, stable_hash
from runner.methods.dual_teacher.teacher_training import describe_callable
from runner.nested import divergence_guard
from runner.utils import isolated_rng

from .network import OVGHQNet

log = logging.getLogger(__name__)


def data_identity(datamodule: Any) -> dict[str, Any]:
    root = str(getattr(datamodule, "root_used", ""))
    recipe = None
    try:
        recipe = json.loads((Path(root) / "recipe.json").read_text()).get("hash")
    except (OSError, ValueError):
        pass
    train = datamodule.dataset("train")
    return {
        "root": root,
        "twin_recipe": recipe,
        "train_qids": stable_hash([r.qid for r in train.records]),
        "chunks": stable_hash(datamodule.train_chunks.tolist()),
        "visual_queries": list(getattr(datamodule, "train_visual_queries", [])),
    }


def debug_mode(trainer: Any) -> dict[str, Any]:
    """The outer trainer's debug settings that a nested training must follow."""
    if trainer is None:
        return {}
    fast = getattr(trainer, "fast_dev_run", False)
    limit = getattr(trainer, "limit_train_batches", None)
    return {
        "fast_dev_run": int(fast) if fast else 0,
        "limit_train_batches": limit if limit not in (None, 1.0) else None,
    }


def _load_state(path: str | Path) -> dict[str, torch.Tensor]:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(payload, dict) and "state_dict" in payload:
        payload = payload["state_dict"]
    if isinstance(payload, dict) and any(k.startswith("net.") for k in payload):
        payload = {k[len("net.") :]: v for k, v in payload.items() if k.startswith("net.")}
    return payload


def train_expert(
    net: OVGHQNet, module_template: Any, datamodule: Any, recipe: dict[str, Any], debug: dict[str, Any]
) -> None:
    """Train ``net`` in place on the expert condition with the module's own loss (no distillation)."""
    from .module import OVGHQModule

    optimizer = recipe.get("optimizer") or module_template.optimizer_factory
    module = OVGHQModule(
        net,
        optimizer=optimizer,
        scheduler=None,
        anchors=[int(a) for a in module_template.anchor_lengths.tolist()],
        clip_seconds=module_template.clip_seconds,
        window=module_template.window,
        modality_cycle=[recipe["condition"]],
        loss=module_template.loss_cfg,
        distill={"enabled": False},
        emission=module_template.emission_cfg,
        val_conditions=[],
        test_conditions=[],
    )
    dm = copy.copy(datamodule)
    own_lr = optimizer is not module_template.optimizer_factory
    lr_key = "method.distill.expert_training.optimizer.lr" if own_lr else "method.optimizer.lr"
    with isolated_rng(int(recipe["seed"])):
        trainer = L.Trainer(
            callbacks=[divergence_guard("segment+text expert", lr_key)],  # one line naming lr_key
            max_epochs=int(recipe["max_epochs"]),
            accelerator="auto",
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
            limit_val_batches=0,
            gradient_clip_val=recipe.get("gradient_clip_val"),
            fast_dev_run=debug.get("fast_dev_run") or False,
            limit_train_batches=debug.get("limit_train_batches"),
        )
        trainer.fit(module, train_dataloaders=dm.train_dataloader())
    net.eval()


def load_or_train_expert(
    student: OVGHQNet, distill: dict[str, Any], datamodule: Any, trainer: Any, module: Any
) -> tuple[OVGHQNet, dict[str, Any]]:
    """The frozen expert network and where it came from (``{"path", "sha256", ...}``)."""
    training = dict(distill["expert_training"])
    seed = int(training.get("seed", 0))
    with isolated_rng(seed):
        expert = student.spawn()
    path = distill.get("expert_checkpoint")
    if path:
        if not Path(path).is_file():
            raise UserError(
                f"method.distill.expert_checkpoint={path} does not exist; give a local file or null to train it"
            )
        expert.load_state_dict(_load_state(path))
        return expert, {"path": str(path), "sha256": sha256_file(path), "trained_here": False}
    if datamodule is None:
        raise UserError(
            "method.distill.expert_checkpoint is null and no data module is available to train the expert"
        )
    debug = debug_mode(trainer)
    recipe = {
        "condition": distill["expert_condition"],
        "max_epochs": int(training.get("max_epochs", 30)),
        "seed": seed,
        "optimizer": training.get("optimizer") or module.optimizer_factory,
        "gradient_clip_val": training.get("gradient_clip_val", getattr(trainer, "gradient_clip_val", None)),
        "loss": module.loss_cfg,
    }
    key = stable_hash(
        {
            "net": student.describe(),
            "recipe": describe_callable({k: v for k, v in recipe.items()}),
            "data": data_identity(datamodule),
            "debug": debug,
        }
    )[:24]
    cache = Path(str(training.get("cache_dir", "ovg_hq_experts"))) / f"{key}.pt"
    cache.parent.mkdir(parents=True, exist_ok=True)
    # one process trains, the others (parallel sweep jobs) wait for its file
    with open(cache.with_suffix(".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            _load_or_train(expert, cache, key, recipe, debug, module, datamodule)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return expert, {"path": str(cache), "sha256": sha256_file(cache), "trained_here": True, "debug": debug}


def _load_or_train(expert, cache: Path, key: str, recipe, debug, module, datamodule) -> None:
    if cache.is_file():
        log.info("segment+text expert: using cached %s", cache)
        expert.load_state_dict(_load_state(cache))
    else:
        log.info(
            "segment+text expert: no checkpoint yet, training it (%d epochs%s) -> %s",
            recipe["max_epochs"],
            ", debug" if debug.get("fast_dev_run") else "",
            cache,
        )
        started = time.time()
        train_expert(expert, module, datamodule, recipe, debug)
        meta = {"train_seconds": round(time.time() - started, 1), "key": key, "debug": debug}
        AtomicCheckpointIO().save_checkpoint({"state_dict": expert.state_dict(), "meta": meta}, cache)
        log.info("segment+text expert: trained in %.0fs", meta["train_seconds"])
