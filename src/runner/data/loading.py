"""What every training DataLoader needs for exact resume with worker processes (issue 18, item 2).

Measured cause (video twin, ``num_workers=2``, 1 epoch + resume != 2 epochs straight):

1. Lightning's ``FitLoop.setup_data`` creates the training iterator *before* it calls
   ``sampler.set_epoch`` for the first epoch of a fit. Without workers the sampler is iterated lazily,
   after ``set_epoch``; with workers the iterator prefetches ``prefetch_factor x num_workers``
   batches of indices at creation, so a resumed run drew epoch 0's order again in its first epoch.
   :func:`fit_epoch` gives a sampler the epoch the fit loop is about to run, read from the restored
   loop state, when the loader is built.
2. Every new ``DataLoader`` iterator draws its workers' base seed from ``loader.generator`` — the
   global torch RNG when none is given. With ``persistent_workers=true`` an uninterrupted run
   creates the iterator once while a resumed run creates it again, shifting the global stream (and
   every dropout mask after it). :func:`loader_generator` gives each loader a private generator.

Worker-side randomness must come from per-sample seeds handed out by the sampler (as the video
pipeline's :class:`~runner.data.video.datamodule.EpochSeededSampler` does), never from the worker's
global RNG, whose stream restarts when workers are re-created.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Sampler

__all__ = ["EpochSeededSampler", "fit_epoch", "loader_generator", "sampler_key", "worker_context"]


def fit_epoch(owner: Any) -> int:
    """The epoch the attached trainer's fit loop runs next (0 when not attached to a trainer).

    Called when a training loader is built (``train_dataloader()``), after a checkpoint's loop state
    was restored: this is the value Lightning passes to ``set_epoch`` a moment later.
    """
    try:
        trainer = getattr(owner, "trainer", None)
    except RuntimeError:  # a LightningModule not attached to a trainer
        trainer = None
    fit_loop = getattr(trainer, "fit_loop", None)
    if fit_loop is None:
        return 0
    try:
        return int(fit_loop.epoch_progress.current.processed)
    except (AttributeError, TypeError, ValueError):
        return 0


def loader_generator(seed: int) -> torch.Generator:
    """A private generator for a DataLoader, so creating its iterator never touches the global RNG."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + 7)


class EpochSeededSampler(Sampler[tuple[int, int]]):
    """Shuffles the training set as a function of ``(seed, epoch)`` only, and gives every sample a
    seed for its augmentations: yields ``(index, sample_seed)``.

    Lightning calls :meth:`set_epoch` at the start of every epoch (also after a resume), so the
    order and the augmentations of epoch e do not depend on how much global RNG was consumed
    before — 1 epoch + resume 1 epoch sees the same data as 2 epochs straight.
    (Under DDP Lightning wraps this sampler; it then shuffles per epoch with its own seed and the
    per-sample seeds repeat across epochs.) ``epoch`` is the epoch it starts at: with loader workers
    the first iterator of a fit is created before ``set_epoch`` (see :mod:`runner.data.loading`).
    """

    def __init__(self, length: int, seed: int = 0, epoch: int = 0) -> None:
        self.length = int(length)
        self.seed = int(seed)
        self.epoch = int(epoch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.length

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.length, generator=generator).tolist()
        seeds = torch.randint(0, 2**62, (self.length,), generator=generator).tolist()
        return iter(zip(order, seeds, strict=True))


def sampler_key(key: int | tuple[int, int]) -> tuple[int, int | None]:
    """``(index, sample_seed)`` of a dataset key: :class:`EpochSeededSampler` hands out pairs, plain
    (evaluation) loaders an index alone (then the seed is None)."""
    return key if isinstance(key, tuple) else (key, None)


def worker_context(num_workers: int) -> Any:
    """The ``multiprocessing_context`` of a DataLoader with ``num_workers`` workers: the process's own
    start method, unless it is one ``multiprocessing`` cannot start a plain worker with. Inside a joblib
    (loky) job of ``hydra/launcher=joblib`` -- every table sweep -- the default context is loky's, whose
    Popen fails on torch's worker processes (``'Process' object has no attribute 'env'``); then fork
    (POSIX) or spawn. None without workers or with a standard start method."""
    import multiprocessing
    import sys

    method = multiprocessing.get_start_method(allow_none=True)
    if num_workers <= 0 or method in (None, "fork", "spawn", "forkserver"):  # None: the platform default
        return None
    return multiprocessing.get_context("spawn" if sys.platform in ("win32", "darwin") else "fork")
