"""Lightning callbacks shared by every method: exact resume, run metadata, data health, NaN stop."""

from __future__ import annotations

import logging
import math
import random
from typing import Any

import lightning as L
import numpy as np
import torch

from runner.errors import UserError

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


def batch_has_samples(batch: Any) -> bool:
    """False for a batch whose tensors all have a zero-sized first dimension (every sample was
    dropped, e.g. all clips of the batch were corrupt); True for anything else (scalars included)."""
    sizes: list[int] = []

    def visit(node: Any) -> None:
        if isinstance(node, torch.Tensor):
            sizes.append(int(node.shape[0]) if node.ndim else 1)
        elif isinstance(node, dict):
            for value in node.values():
                visit(value)
        elif isinstance(node, list | tuple):
            for value in node:
                visit(value)

    visit(batch)
    return not sizes or max(sizes) > 0


class DataPresenceCounter(L.Callback):
    """Counts the training / evaluation batches that held at least one sample, so that a run with
    no training batch or an empty evaluation set fails instead of ending with exit 0 (runner.train
    adds it to every run)."""

    def __init__(self) -> None:
        self.train_batches = 0
        self.test_batches = 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.train_batches += batch_has_samples(batch)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self.test_batches += batch_has_samples(batch)


class NonFiniteLoss(UserError):
    """Training diverged: a NaN / infinite / exploding loss, or parameters that blew up.

    A :class:`~runner.errors.UserError` (a learning rate too high for the data), so the CLI prints
    its one-line message instead of a traceback."""


# what to lower when a run diverges, by the config keys it has (first present wins); a config group
# whose step size lives elsewhere adds its key here
LOSS_LR_KEYS = ("fl_strategy.local_lr", "method.optimizer.lr", "model.lr", "method.lr")
UPDATE_LR_KEYS = ("fl_strategy.server_lr",)  # a server step applies the aggregate (FL)


def divergence_keys(cfg: Any) -> dict[str, str]:
    """``{"loss": key, "update": key}``: the learning rates to lower when the loss of a step, or the
    parameter update of a step (the server step of FL), diverges."""
    from omegaconf import OmegaConf

    def first(keys: tuple[str, ...]) -> str | None:
        return next((k for k in keys if OmegaConf.select(cfg, k, default=None) is not None), None)

    loss_key = first(LOSS_LR_KEYS)
    update_key = first(UPDATE_LR_KEYS) or loss_key
    return {k: v for k, v in {"loss": loss_key, "update": update_key}.items() if v}


class NonFiniteLossGuard(L.Callback):
    """Stops a diverging run with one line: the global step, epoch and batch of the first bad step,
    every named loss term (``{"loss": total, "loss_terms": {...}}``) and the config key to lower.

    A step is bad when its loss is NaN / inf or above ``max_loss``, or when after its update a
    parameter is NaN / inf or larger than ``max_abs`` in magnitude (exploding embeddings). The
    update case names the key of the update (``fl_strategy.server_lr`` for a server step). The checks
    stay on the device; the host looks at them every ``check_every_n_steps`` steps and at the end of
    each epoch, then reports the *first* bad step. ``lower_keys`` (``{"loss": key, "update": key}``)
    is filled by ``runner.train`` from the run's config (:func:`divergence_keys`); a nested training
    (:func:`runner.nested.nested_trainer`) passes its ``stage`` name, which starts the message, and
    its recipe's key, whose value is then read from the optimizer (its initial lr) when it starts.
    """

    def __init__(
        self,
        check_every_n_steps: int = 1,
        max_loss: float = 1.0e8,
        max_abs: float = 1.0e6,
        lower_keys: dict[str, str] | None = None,
        stage: str | None = None,
    ) -> None:
        self.stage = stage
        self.check_every_n_steps = max(1, int(check_every_n_steps))
        self.max_loss = float(max_loss)
        self.max_abs = float(max_abs)
        self.lower_keys = dict(lower_keys or {})
        self.lower_values: dict[str, Any] = {}
        self._pending: list[tuple[int, int, int, torch.Tensor, torch.Tensor | None, dict]] = []

    def _param_size(self, pl_module: Any) -> torch.Tensor | None:
        """Largest parameter magnitude (NaN if any is NaN), on the device: no host sync."""
        params = [p.detach() for p in pl_module.parameters() if p.requires_grad and p.numel()]
        if not params:
            return None
        return torch.stack(torch._foreach_norm(params, float("inf"))).max()

    def on_train_start(self, trainer, pl_module) -> None:
        groups = trainer.optimizers[0].param_groups if trainer.optimizers else []
        if groups:  # the lr the recipe set (a scheduler keeps it as initial_lr)
            lr = groups[0].get("initial_lr", groups[0].get("lr"))
            for key in self.lower_keys.values():
                self.lower_values.setdefault(key, lr)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):
            loss = None
        terms = (outputs.get("loss_terms") or {}) if isinstance(outputs, dict) else {}
        self._pending.append(
            (
                int(trainer.global_step),
                int(trainer.current_epoch),
                int(batch_idx),
                loss.detach().float() if loss is not None else None,
                self._param_size(pl_module) if pl_module is not None else None,
                {k: v.detach() if isinstance(v, torch.Tensor) else v for k, v in terms.items()},
            )
        )
        if len(self._pending) >= self.check_every_n_steps:
            self._flush()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._flush()

    def on_train_end(self, trainer, pl_module) -> None:
        self._flush()

    @staticmethod
    def _bad(value: torch.Tensor | None, limit: float) -> torch.Tensor | None:
        """A 0-dim bool tensor on the value's device: non-finite or above ``limit`` in magnitude."""
        if value is None:
            return None
        size = value.abs().max()
        return ~torch.isfinite(size) | (size > limit)

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        flags = [
            (self._bad(loss, self.max_loss), self._bad(size, self.max_abs))
            for _, _, _, loss, size, _ in pending
        ]
        device = next((f.device for pair in flags for f in pair if f is not None), None)
        if device is None:
            return
        no = torch.zeros((), dtype=torch.bool, device=device)
        stacked = torch.stack(
            [torch.stack([a if a is not None else no, b if b is not None else no]) for a, b in flags]
        )
        for entry, (loss_bad, update_bad) in zip(pending, stacked.tolist(), strict=True):  # one host sync
            if loss_bad or update_bad:
                raise NonFiniteLoss(self._message(*entry, loss_bad))

    def _message(self, step, epoch, batch_idx, loss, size, terms, loss_bad: bool) -> str:
        shown = {k: round(float(v), 6) if isinstance(v, torch.Tensor) else v for k, v in terms.items()}
        if loss_bad:
            value = float(loss.abs().max())
            what = f"loss {value:.4g}" + (f" (limit {self.max_loss:g})" if math.isfinite(value) else "")
        else:
            what = f"after this step's update a parameter reached {float(size):.4g} (limit {self.max_abs:g})"
        key = self.lower_keys.get("loss" if loss_bad else "update")
        hint = ""
        if key:
            hint = f"; lower {key}" + (f" (now {self.lower_values[key]})" if key in self.lower_values else "")
        return (
            (f"{self.stage}: " if self.stage else "")
            + f"training diverged at global step {step}, epoch {epoch}, batch {batch_idx}: {what}; "
            f"loss terms: {shown}{hint}"
        )
