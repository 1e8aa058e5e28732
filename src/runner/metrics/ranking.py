"""Top-k ranking metrics of full-sort recommendation evaluation (RecBole definitions).

For a user with relevant set ``R`` (``|R| > 0``) and ranked list ``r_1, r_2, ...``:

* ``Recall@k = |{r_1..r_k} ∩ R| / |R|``;
* ``NDCG@k = DCG@k / IDCG@k`` with ``DCG@k = sum_{j<=k, r_j in R} 1 / log2(j + 1)`` and ``IDCG@k``
  the DCG of ``min(|R|, k)`` hits at the top.

Users without relevant items are not counted (RecBole drops them from evaluation).
:class:`RankingMetrics` accumulates per-user sums on the device (DDP-reducible torchmetrics states).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torchmetrics import Metric

__all__ = ["RankingMetrics", "ranking_metrics_per_user", "topk_hits"]


def topk_hits(scores: torch.Tensor, relevant: torch.Tensor, k: int) -> torch.Tensor:
    """``bool [n, k]``: whether each of the top-``k`` items of every row of ``scores`` is relevant."""
    top = torch.topk(scores, min(int(k), scores.shape[1]), dim=1).indices
    return relevant.gather(1, top)


def ranking_metrics_per_user(
    hits: torch.Tensor, num_relevant: torch.Tensor, ks: Sequence[int]
) -> dict[str, torch.Tensor]:
    """Per-user ``recall@k`` and ``ndcg@k`` (``[n]`` each) from top-list hits ``[n, K]``, ``K >= max(ks)``."""
    hits = hits.float()
    positions = torch.arange(hits.shape[1], device=hits.device, dtype=hits.dtype)
    discounts = 1.0 / torch.log2(positions + 2.0)
    dcg = torch.cumsum(hits * discounts, dim=1)
    idcg_table = torch.cumsum(discounts, dim=0)
    num_hits = torch.cumsum(hits, dim=1)
    denominator = num_relevant.to(hits.dtype).clamp_min(1.0)
    out = {}
    for k in ks:
        k_used = min(int(k), hits.shape[1])
        ideal = idcg_table[(num_relevant.clamp(min=1, max=k_used) - 1).long()]
        out[f"recall@{k}"] = num_hits[:, k_used - 1] / denominator
        out[f"ndcg@{k}"] = dcg[:, k_used - 1] / ideal
    return out


class RankingMetrics(Metric):
    """Mean Recall@k / NDCG@k over evaluated users, accumulated on the device.

    ``update(hits [n, K] bool, num_relevant [n])``; ``compute()`` returns ``{"recall@10": ..., ...}``.
    """

    full_state_update = False

    def __init__(self, ks: Sequence[int] = (10, 20, 50), **kwargs):
        super().__init__(**kwargs)
        self.ks = tuple(int(k) for k in ks)
        self.names = [f"{m}@{k}" for k in self.ks for m in ("recall", "ndcg")]
        self.add_state(
            "sums", default=torch.zeros(len(self.names), dtype=torch.float64), dist_reduce_fx="sum"
        )
        self.add_state("users", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, hits: torch.Tensor, num_relevant: torch.Tensor) -> None:
        per_user = ranking_metrics_per_user(hits, num_relevant, self.ks)
        counted = (num_relevant > 0).to(torch.float64)
        values = torch.stack([per_user[name].to(torch.float64) for name in self.names])
        self.sums += (values * counted).sum(1)
        self.users += counted.sum()

    def compute(self) -> dict[str, torch.Tensor]:
        mean = self.sums / self.users.clamp_min(1.0)
        return {name: mean[j].float() for j, name in enumerate(self.names)}
