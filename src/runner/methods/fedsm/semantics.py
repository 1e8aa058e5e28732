"""FedSM's distinctive computations (card ``fedsm.md``), as pure tensor functions.

* :func:`semantic_relevance` — ``S = t̂ t̂ᵀ`` over L2-normalised class-name embeddings, with the
  diagonal replaced by the row mean. The card does not say whether the row mean includes the
  diagonal; here it is the mean of the row's *off-diagonal* entries (so a class is as likely to
  draw its own features as an average other class) — a documented reading.
* :func:`pseudo_features` — for each class c, draw local features j with probability ∝ S[c, y_j]
  (without replacement), then ``z = λ P_c + (1 − λ) f_j / ‖f_j‖`` with ``λ ~ U[λ_lo, λ_hi]``
  (card: U[0.35, 0.95]), labelled c.
* :func:`retrain_linear_classifier` — a fresh linear classifier trained on real + pseudo features
  (the classifier the server averages and evaluation uses).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def semantic_relevance(text_embeddings: torch.Tensor) -> torch.Tensor:
    """``S [C, C]`` from class-name embeddings ``[C, e]`` (diagonal = mean of the row's other entries)."""
    t = F.normalize(text_embeddings.float(), dim=-1)
    relevance = t @ t.T
    c = relevance.shape[0]
    off_diagonal = ~torch.eye(c, dtype=torch.bool, device=relevance.device)
    row_mean = (relevance * off_diagonal).sum(1) / max(c - 1, 1)
    return torch.where(off_diagonal, relevance, row_mean[:, None].expand_as(relevance))


def pseudo_features(
    features: torch.Tensor,
    labels: torch.Tensor,
    prototypes: torch.Tensor,
    relevance: torch.Tensor,
    per_class: int = 100,
    lam_range: tuple[float, float] = (0.35, 0.95),
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pseudo-features ``[M, d]`` and their labels ``[M]`` (M ≤ C · per_class), equations above.

    Classes whose prototype is zero (no client holds them) get no pseudo-features. Sampling
    weights are ``S[c, y_j]`` clipped at a small positive floor, so negative cosine similarities
    never make a probability negative.
    """
    num_classes = prototypes.shape[0]
    unit = F.normalize(features, dim=-1)
    weights_per_class = relevance[:, labels].clamp_min(1e-6)  # [C, m]
    draws = min(per_class, features.shape[0])
    out_features, out_labels = [], []
    for c in range(num_classes):
        if not bool(prototypes[c].abs().sum() > 0):
            continue
        # random draws on the CPU (a CPU generator works with features on any device)
        chosen = torch.multinomial(weights_per_class[c].cpu(), draws, replacement=False, generator=generator)
        chosen = chosen.to(features.device)
        lam = torch.empty(draws, 1).uniform_(*lam_range, generator=generator).to(features.device)
        out_features.append(lam * prototypes[c] + (1 - lam) * unit[chosen])
        out_labels.append(torch.full((draws,), c, dtype=torch.long, device=features.device))
    if not out_features:
        return features.new_zeros(0, features.shape[1]), labels.new_zeros(0)
    return torch.cat(out_features), torch.cat(out_labels)


def retrain_linear_classifier(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    epochs: int = 10,
    lr: float = 0.1,
    batch_size: int = 64,
    generator: torch.Generator | None = None,
) -> nn.Linear:
    """A fresh ``nn.Linear(d, C)`` trained by SGD (momentum 0.9) with cross-entropy on ``features``.

    With a ``generator`` the initial weights and the minibatch order are drawn from it (no global RNG),
    so the retraining is a function of its inputs and the generator's seed."""
    d = features.shape[1]
    if generator is None:
        classifier = nn.Linear(d, num_classes).to(features.device, features.dtype)
    else:  # nn.Linear's U(±1/√d) init drawn from ``generator``, leaving the global RNG untouched
        classifier = nn.Linear(d, num_classes, device="meta").to_empty(device=features.device)
        classifier = classifier.to(features.dtype)
        with torch.no_grad():
            for param in classifier.parameters():
                init = torch.empty(param.shape, dtype=torch.float64).uniform_(
                    -(d**-0.5), d**-0.5, generator=generator
                )
                param.copy_(init.to(param.dtype))
    optimizer = torch.optim.SGD(classifier.parameters(), lr=lr, momentum=0.9)
    n = features.shape[0]
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator).to(features.device)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            loss = F.cross_entropy(classifier(features[idx]), labels[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return classifier
