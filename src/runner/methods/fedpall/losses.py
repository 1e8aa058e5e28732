"""FedPall's local-loss terms and mixed features (card ``fedpall.md``, read from DistriAI/FedPall).

Local loss ``L = CE + β·KL(u ‖ softmax(D(h))) + μ·InfoNCE(h, P)``:

* :func:`client_confusion_kl` — ``KL(u ‖ softmax(D(h)))`` with u uniform over the K clients: it is
  smallest when the (frozen) discriminator cannot tell which client a feature came from.
* :func:`prototype_info_nce` — InfoNCE of each feature against the global prototypes with temperature
  T (card: T = 3). Official form (``update_weights_ours_debug`` in DistriAI/FedPall ``exps/update.py``;
  the default): ``−log exp(ĥ·P̂_y/T) / Σ_c exp(ĥ·P_c/T)`` — the positive uses the normalised prototype,
  the denominator the *unnormalised* ones (ĥ = h/‖h‖, P̂ = P/‖P‖). ``normalise_negatives=True`` gives the
  cosine form ``−log exp(ĥ·P̂_y/T) / Σ_c exp(ĥ·P̂_c/T)`` (a switch: ``fl_strategy.info_nce=normalised``).
* :func:`feature_mask` — one client's binary mask per round: exactly ``⌊keep·d⌋`` ones at random
  positions (official ``generate_random_tensor``), or, as a switch, each dimension kept with
  probability ``keep`` (Bernoulli).
* :func:`mixed_features` — the features uploaded to the server, ``f̃ = m ⊙ (λ h + (1 − λ) P_y)`` with
  ``λ ~ U[lo, hi]`` (per sample here; the strategy passes one λ per client and round, as the official
  code draws it).
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
    features: torch.Tensor,
    labels: torch.Tensor,
    prototypes: torch.Tensor,
    temperature: float = 3.0,
    normalise_negatives: bool = False,
) -> torch.Tensor:
    """Mean InfoNCE of ``features [B, d]`` against ``prototypes [C, d]`` (positive: the own class);
    the official form by default, the cosine form with ``normalise_negatives`` (module docstring)."""
    h = F.normalize(features, dim=-1)
    unit = F.normalize(prototypes, dim=-1)
    positive = (h * unit[labels]).sum(-1) / temperature
    negatives = h @ (unit if normalise_negatives else prototypes).T / temperature
    return (torch.logsumexp(negatives, dim=-1) - positive).mean()


MASK_SAMPLING = ("exact", "bernoulli")


def feature_mask(
    dim: int,
    keep: float = 0.9,
    generator: torch.Generator | None = None,
    device=None,
    sampling: str = "exact",
) -> torch.Tensor:
    """One client's binary mask for a round (module docstring): ``exact`` — ``⌊keep·dim⌋`` ones at
    random positions; ``bernoulli`` — each dimension kept with probability ``keep``."""
    if sampling == "bernoulli":
        return (torch.rand(dim, generator=generator) < keep).float().to(device)
    if sampling != "exact":
        raise ValueError(f"mask sampling must be one of {MASK_SAMPLING}, got {sampling!r}")
    mask = torch.zeros(dim)
    mask[torch.randperm(dim, generator=generator)[: int(dim * keep)]] = 1.0
    return mask.to(device)


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
