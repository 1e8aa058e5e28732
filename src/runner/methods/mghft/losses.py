"""MGHFT's losses (card, "Model" and "Read from the official code").

Per stage ``i``, between the stage's global visual token ``v_i`` and its view's text feature ``t_i``
(a batch of ``B`` pairs):

* symmetric InfoNCE, temperature 0.07:
  ``L_nce = ½ [CE(V Tᵀ / τ, I) + CE(T Vᵀ / τ, I)]`` with ``V, T`` the L2-normalised features;
* structure loss: similarity structures ``S_X = ½(1 + X Xᵀ)``, ``W_X = softmax_dim0(S_X)ᵀ``
  (rows are distributions; ``S`` is symmetric), and ``KL(W_T ‖ W_V)``;
* stage loss ``L_nce + 30 · KL``; the four stage losses are summed and weighted 0.5 in the total
  (``L = CE_ls(0.2) + 0.5 Σ_i L_i``; the weighting lives in the module).

``kl_reduction``: ``batchmean`` (default: the mean over the batch of each row's KL, the definition of
a KL between per-sample distributions) or ``sum`` (what the released code does:
``F.kl_div(..., reduction='sum')``, which grows with the batch size — the 30x weight then means
something else at every batch size).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

KL_REDUCTIONS = ("batchmean", "sum")


def symmetric_info_nce(visual: torch.Tensor, text: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """½(CE(logits, diag) + CE(logitsᵀ, diag)) with ``logits = norm(V) norm(T)ᵀ / temperature``."""
    v = F.normalize(visual, dim=-1)
    t = F.normalize(text, dim=-1)
    logits = v @ t.t() / temperature
    target = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def similarity_structure(features: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``W = softmax_dim0(½(1 + X Xᵀ) / temperature)ᵀ`` of L2-normalised rows ``X``."""
    x = F.normalize(features, dim=-1)
    return torch.softmax(0.5 * (1 + x @ x.t()) / temperature, dim=0).t()


def structure_kl(
    visual: torch.Tensor, text: torch.Tensor, reduction: str = "batchmean", temperature: float = 1.0
) -> torch.Tensor:
    """``KL(W_text ‖ W_visual)`` between the batch's similarity structures (see module docstring)."""
    if reduction not in KL_REDUCTIONS:
        raise ValueError(f"kl reduction must be one of {KL_REDUCTIONS}, got {reduction!r}")
    w_visual = similarity_structure(visual, temperature)
    w_text = similarity_structure(text, temperature)
    return F.kl_div(w_visual.log(), w_text, reduction=reduction)


def stage_alignment_loss(
    visual: torch.Tensor,
    text: torch.Tensor,
    temperature: float = 0.07,
    kl_weight: float = 30.0,
    kl_reduction: str = "batchmean",
) -> torch.Tensor:
    """One stage's loss: symmetric InfoNCE + ``kl_weight`` · structure KL."""
    return symmetric_info_nce(visual, text, temperature) + kl_weight * structure_kl(
        visual, text, kl_reduction
    )
