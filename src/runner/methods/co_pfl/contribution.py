"""COWA — contribution-oriented weighted aggregation (card ``co_pfl.md``; a reconstruction).

Confirmed: Γ_grad is cosine-distance based and rewards a client whose update direction differs
from the mean update of the *other* clients (complementary knowledge); Γ_data is leave-one-out:
the aggregate without client n, w_{−n}, evaluated on client n's own data, up-weighting clients the
others serve poorly. Reconstructed (switches):

* ``Γ_grad_n = 1 − cos(Δ_n, mean_{m≠n} Δ_m)`` (:func:`gradient_contribution`);
* ``Γ_data_n`` = loss of w_{−n} on client n's data, computed by the engine from
  :func:`leave_one_out_aggregates`;
* ``α = softmax(λ_g·z(Γ_grad) + λ_d·z(Γ_data))`` (``mode="softmax"``, z = standardisation over the
  round's clients) or the normalised product ``Γ_grad·Γ_data / Σ`` (``mode="product"``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from runner.errors import invalid_value

WEIGHT_MODES = ("softmax", "product")


def leave_one_out_aggregates(updates: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """``[n, d]``: row n is the (weighted) mean of every update except n's."""
    n = updates.shape[0]
    w = (
        torch.ones(n, dtype=updates.dtype, device=updates.device)
        if weights is None
        else weights.to(updates.dtype)
    )
    total = (w[:, None] * updates).sum(0)
    rest = (total[None] - w[:, None] * updates) / (w.sum() - w).clamp_min(1e-12)[:, None]
    return rest


def gradient_contribution(updates: torch.Tensor) -> torch.Tensor:
    """``Γ_grad [n]``: cosine distance between each update and the mean of the others."""
    others = leave_one_out_aggregates(updates)
    return 1 - F.cosine_similarity(updates, others, dim=-1)


def _standardise(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean()) / x.std(unbiased=False).clamp_min(1e-12)


def contribution_weights(
    grad_scores: torch.Tensor,
    data_scores: torch.Tensor,
    lambda_grad: float = 1.0,
    lambda_data: float = 1.0,
    mode: str = "softmax",
) -> torch.Tensor:
    """Aggregation weights ``α [n]`` (sum 1) from the two contribution scores (module docstring)."""
    if mode == "softmax":
        return torch.softmax(
            lambda_grad * _standardise(grad_scores) + lambda_data * _standardise(data_scores), dim=0
        )
    if mode == "product":
        product = grad_scores.clamp_min(0) * data_scores.clamp_min(0)
        total = product.sum()
        return product / total if total > 0 else torch.full_like(product, 1 / product.numel())
    raise invalid_value("fl_strategy.weight_mode", mode, "one of " + ", ".join(WEIGHT_MODES))
