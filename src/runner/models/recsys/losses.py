"""Losses of the graph recommenders (RecBole / RecBole-GNN conventions, NLGCL card "Method").

The models compute their own losses with them, so they live with the models (a lower layer than
``runner.methods``, which re-exports them from ``runner.methods.recsys``).

* :func:`bpr_loss` -- RecBole ``BPRLoss``: ``mean(-log sigmoid(s_pos - s_neg))`` (computed with
  ``logsigmoid`` instead of RecBole's ``log(1e-10 + sigmoid)``; equal up to that epsilon).
* :func:`emb_loss` -- RecBole ``EmbLoss``: ``sum_k ||E_k||_F / B`` (``require_pow=False``) or
  ``sum_k ||E_k||_F^2 / (2 B)`` (``require_pow=True``), ``B`` = rows of the last tensor.
* :func:`info_nce` -- ``sum_b -log(exp(cos(a_b, p_b)/τ) / sum_j exp(cos(a_b, c_j)/τ))`` with cosine
  similarity; ``candidates`` usually contain the positives (in-batch negatives, duplicates kept).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from runner.errors import invalid_value

__all__ = ["bpr_loss", "emb_loss", "info_nce"]


def bpr_loss(pos_scores: torch.Tensor, neg_scores: torch.Tensor) -> torch.Tensor:
    """Bayesian personalised ranking loss, averaged over the batch."""
    return -F.logsigmoid(pos_scores - neg_scores).mean()


def emb_loss(*embeddings: torch.Tensor, require_pow: bool = False) -> torch.Tensor:
    """RecBole's L2 embedding regulariser on the (ego) embeddings of a batch."""
    batch = embeddings[-1].shape[0]
    if require_pow:
        return sum(e.pow(2).sum() for e in embeddings) / batch / 2
    return sum(torch.linalg.vector_norm(e) for e in embeddings) / batch


def info_nce(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    candidates: torch.Tensor,
    temperature: float,
    reduction: str = "sum",
    keep: torch.Tensor | None = None,
) -> torch.Tensor:
    """InfoNCE with cosine similarity; ``reduction`` over anchors: ``sum`` or ``mean``.

    ``keep`` (bool per row; anchors and candidates are then the same ``n`` rows of a batch): only
    these rows count, as anchors and as candidates -- the InfoNCE of ``anchor[keep]`` etc. computed
    without a data-dependent shape (no host sync on CUDA).
    """
    if reduction not in ("sum", "mean"):
        raise invalid_value("model.cl_reduction / model.ssl_reduction", reduction, "one of sum, mean")
    anchor = F.normalize(anchor, dim=-1)
    positive = F.normalize(positive, dim=-1)
    candidates = F.normalize(candidates, dim=-1)
    pos = (anchor * positive).sum(-1) / temperature
    logits = anchor @ candidates.T / temperature
    if keep is not None:
        logits = logits.masked_fill(~keep[None, :], float("-inf"))
    loss = torch.logsumexp(logits, dim=-1) - pos
    if keep is None:
        return loss.sum() if reduction == "sum" else loss.mean()
    total = torch.where(keep, loss, 0.0).sum()
    return total if reduction == "sum" else total / keep.sum()
