"""Lightning callbacks shared by every method: exact resume, run metadata, data health, NaN stop."""

from __future__ import annotations

import logging
import random
from typing import Any

import lightning as L
import numpy as np
import torch

log = logging.getLogger(__name__)


class RNGStateCallback(L.Callback):
    """Saves the Python, NumPy and torch (CPU + CUDA) RNG states in every checkpoint and restores
    them on resume, so that 1 epoch + resume 1 epoch draws the same shuffles and augmentations as
    2 epochs straight. States are stored as tensors / plain types (loadable with weights_only=True).
    """

    def state_dict(self) -> dict[str, Any]:
        np_state = np.random.get_state()
        state = {
            "python": random.getstate(),
            "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "numpy_meta": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        python_state = state_dict["python"]
        random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
        name, pos, has_gauss, cached = state_dict["numpy_meta"]
        keys = state_dict["numpy_keys"].numpy().astype(np.uint32)
        np.random.set_state((name, keys, pos, has_gauss, cached))
        torch.set_rng_state(state_dict["torch"])
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


class RunMetadataCallback(L.Callback):
    """Keeps the W&B run id in checkpoints so that a resumed run continues the same W&B run."""

    def __init__(self) -> None:
        self.wandb_run_id: str | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for logger in trainer.loggers:
            if type(logger).__name__ == "WandbLogger":
                self.wandb_run_id = logger.version

    def state_dict(self) -> dict[str, Any]:
        return {"wandb_run_id": self.wandb_run_id}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.wandb_run_id = state_dict.get("wandb_run_id") or self.wandb_run_id


class CorruptSampleCounter(L.Callback):
    """Counts the samples a data loader skipped as corrupt (batch key ``corrupt``: list of paths).

    Readers never crash on an undecodable file: they drop it from the batch and name it there.
    The totals are logged once per epoch and written to ``metrics.json`` by runner.train.
    """

    def __init__(self) -> None:
        self.paths: set[str] = set()
        self.occurrences = 0

    def _count(self, batch: Any) -> None:
        if isinstance(batch, dict):
            corrupt = batch.get("corrupt") or []
            self.occurrences += len(corrupt)
            self.paths.update(corrupt)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._count(batch)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._count(batch)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._count(batch)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if self.paths:
            log.warning("%d corrupt sample(s) skipped so far: %s", len(self.paths), sorted(self.paths)[:5])

    def summary(self) -> dict[str, Any]:
        return {"count": len(self.paths), "occurrences": self.occurrences, "paths": sorted(self.paths)}


class NonFiniteLoss(RuntimeError):
    """Raised when a training step produced a NaN or infinite loss."""


class NonFiniteLossGuard(L.Callback):
    """Stops training with a clear message when the loss is NaN/inf.

    The message names the global step, the batch index and every named loss term the step
    returned (``{"loss": total, "loss_terms": {...}}``). Checking costs one host sync, so it is
    done every ``check_every_n_steps`` steps (1 = every step).
    """

    def __init__(self, check_every_n_steps: int = 1) -> None:
        self.check_every_n_steps = max(1, int(check_every_n_steps))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if trainer.global_step % self.check_every_n_steps or not isinstance(outputs, dict):
            return
        loss = outputs.get("loss")
        if loss is None or bool(torch.isfinite(loss).all()):
            return
        terms = {k: float(v) for k, v in (outputs.get("loss_terms") or {}).items()}
        raise NonFiniteLoss(
            f"non-finite loss {float(loss)} at global step {trainer.global_step}, "
            f"epoch {trainer.current_epoch}, batch {batch_idx}; loss terms: {terms}"
        )
