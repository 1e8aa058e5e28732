"""FedPall's local-loss terms and mixed features (card ``fedpall.md``, read from DistriAI/FedPall).

Local loss ``L = CE + β·KL(u ‖ softmax(D(h))) + μ·InfoNCE(h, P)``:

* :func:`client_confusion_kl` — ``KL(u ‖ softmax(D(h)))`` with u uniform over the K clients: it is
  smallest when the (frozen) discriminator cannot tell which client a feature came from.
* :func:`prototype_info_nce` — InfoNCE of each feature against the global prototypes with cosine
  similarity and temperature T (card: T = 3): ``−log exp(s(h, P_y)/T) / Σ_c exp(s(h, P_c)/T)``.
* :func:`mixed_features` — the features uploaded to the server,
  ``f̃ = m ⊙ (λ h + (1 − λ) P_y)`` with ``λ ~ U[0.8, 1.0]`` per sample and ``m`` one random binary
  mask per client per round keeping ~90 % of the dimensions (Bernoulli(keep) per dimension).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def client_confusion_kl(discriminator_logits: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``KL(u ‖ softmax(z))`` for logits ``[B, K]``."""
    k = discriminator_logits.shape[-1]
    log_p = F.log_softmax(discriminator_logits, dim=-1)
    return (-math.log(k) - log_p.mean(dim=-1)).mean()


def prototype_info_nce(
    features: torch.Tensor, labels: torch.Tensor, prototypes: torch.Tensor, temperature: float = 3.0
) -> torch.Tensor:
    """Mean InfoNCE of ``features [B, d]`` against ``prototypes [C, d]`` (positive: the own class)."""
    similarity = F.normalize(features, dim=-1) @ F.normalize(prototypes, dim=-1).T
    return F.cross_entropy(similarity / temperature, labels)


def feature_mask(
    dim: int, keep: float = 0.9, generator: torch.Generator | None = None, device=None
) -> torch.Tensor:
    """One client's binary mask for a round: each dimension kept with probability ``keep``."""
    return (torch.rand(dim, generator=generator) < keep).float().to(device)


def mixed_features(
    features: torch.Tensor,
    labels: torch.Tensor,
    prototypes: torch.Tensor,
    mask: torch.Tensor,
    lam_range: tuple[float, float] = (0.8, 1.0),
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """``m ⊙ (λ h + (1 − λ) P_y)`` for ``features [B, d]`` with per-sample λ (equation above)."""
    lam = torch.empty(features.shape[0], 1).uniform_(*lam_range, generator=generator).to(features.device)
    return mask * (lam * features + (1 - lam) * prototypes[labels])
