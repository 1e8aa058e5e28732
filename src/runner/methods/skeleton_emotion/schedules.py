"""Learning-rate schedules expressed relative to the run's length, so a shortened (twin) schedule
keeps the paper's shape."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, MultiStepLR


def multistep_at_fractions(
    optimizer: torch.optim.Optimizer,
    total_epochs: int,
    at_fraction: Sequence[float] = (0.5, 0.75, 0.875),
    gamma: float = 0.1,
) -> MultiStepLR:
    """Multiply the learning rate by ``gamma`` at the given fractions of ``total_epochs`` (STEP: ×0.1 at
    50 %, 75 % and 87.5 % of 1000 epochs); milestones are rounded to whole epochs (at least 1)."""
    milestones = sorted({max(1, round(float(f) * int(total_epochs))) for f in at_fraction})
    return MultiStepLR(optimizer, milestones=milestones, gamma=gamma)


def cosine_over_epochs(
    optimizer: torch.optim.Optimizer, total_epochs: int, min_learning_rate: float = 0.0
) -> CosineAnnealingLR:
    """Cosine annealing from the optimizer's learning rate to ``min_learning_rate`` over ``total_epochs`` (PYSKL's
    ST-GCN++ recipe anneals per iteration to 0; here per epoch)."""
    return CosineAnnealingLR(optimizer, T_max=max(1, int(total_epochs)), eta_min=float(min_learning_rate))
