"""Class prototypes shared by the prototype-based FL methods (FedSM, FedPall).

Global prototype (FedSM card, FedPall card):

    P_c = Σ_n N_{n,c} · normalize(μ_{n,c}) / Σ_n N_{n,c}

with μ_{n,c} client n's mean feature of class c and N_{n,c} its count. A class no client holds
gets a zero prototype.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def class_means(
    features: torch.Tensor, labels: torch.Tensor, num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class mean feature ``[C, d]`` (zero for absent classes) and per-class counts ``[C]``."""
    counts = torch.bincount(labels, minlength=num_classes).to(features.dtype)
    sums = torch.zeros(num_classes, features.shape[1], dtype=features.dtype, device=features.device)
    sums.index_add_(0, labels, features)
    return sums / counts.clamp_min(1)[:, None], counts


def global_prototypes(client_means: torch.Tensor, client_counts: torch.Tensor) -> torch.Tensor:
    """``P [C, d]`` from client means ``[n, C, d]`` and counts ``[n, C]`` (equation above)."""
    normalised = F.normalize(client_means, dim=-1)
    weighted = (client_counts[..., None] * normalised).sum(0)
    return weighted / client_counts.sum(0).clamp_min(1e-12)[:, None]
