"""The training loss of the neural paradigms: cross-entropy, optionally class-weighted.

STEP trains with plain cross-entropy (the default). E-Gait's classes are imbalanced, so
``class_weighted=true`` weights each class by ``N / (C · n_c)`` of the training split
(scikit-learn's "balanced" weights) — a switch, off by default.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F


def balanced_class_weights(class_counts: Sequence[int]) -> torch.Tensor:
    """``N / (C · n_c)`` per class; a class absent from training gets weight 0."""
    counts = torch.as_tensor(list(class_counts), dtype=torch.float32)
    total, classes = counts.sum(), counts.numel()
    return torch.where(counts > 0, total / (classes * counts.clamp_min(1.0)), torch.zeros_like(counts))


def emotion_classification_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    class_weights: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Mean cross-entropy of ``logits [B, C]`` against ``labels [B]``."""
    weight = class_weights.to(logits.device, logits.dtype) if class_weights is not None else None
    return F.cross_entropy(logits, labels, weight=weight, label_smoothing=label_smoothing)
