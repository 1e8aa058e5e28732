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

__all__ = ["fit_epoch", "loader_generator"]


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
