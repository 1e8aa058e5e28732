"""Exact uniform negative sampling over the items a user has not trained on (NLGCL card: one uniform
negative per positive; RecBole's uniform sampler excludes every training item of the user).

No rejection loop: a user ``u`` with ``k_u`` training items ``s_0 < s_1 < … < s_{k−1}`` has
``n − k_u`` candidates; draw a rank ``r ~ U{0, …, n − k_u − 1}`` and return the ``r``-th candidate,
``r + #{j : s_j − j ≤ r}`` (``s_j − j`` counts the candidates below ``s_j``, non-decreasing in ``j``).
For all users at once the counts are one ``searchsorted`` in the sorted keys
``u · (n + 1) + (s_j − j)``: exact, vectorised, on the device, no host sync. A user whose training
items are every item has no candidate; such a user gets a uniform item (documented fallback).
"""

from __future__ import annotations

import torch

__all__ = ["ExactNegativeSampler"]


class ExactNegativeSampler:
    """Uniform negatives excluding each user's training items exactly (module docstring).

    Args:
        users, items: the training interactions (``(N,)`` long tensors, duplicates allowed).
        num_users, num_items: id ranges.
    """

    def __init__(self, users: torch.Tensor, items: torch.Tensor, num_users: int, num_items: int) -> None:
        self.num_items = int(num_items)
        span = self.num_items + 1
        pairs = torch.unique(users.long() * self.num_items + items.long())  # sorted, deduplicated
        user, item = pairs // self.num_items, pairs % self.num_items
        counts = torch.bincount(user, minlength=int(num_users))
        starts = torch.cumsum(counts, 0) - counts
        rank = torch.arange(pairs.numel(), device=pairs.device) - starts[user]
        self.keys = user * span + (item - rank)  # sorted: by user, then non-decreasing s_j − j
        self.starts = starts
        self.counts = counts

    def sample(self, users: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One negative item per entry of ``users`` (same device)."""
        users = users.long()
        free = (self.num_items - self.counts[users]).clamp_min(0)
        u = torch.rand(users.shape, device=users.device, generator=generator)
        full = free == 0  # every item trained on: fall back to a uniform item
        r = torch.where(
            full, (u * self.num_items).long(), (u * free).long().clamp_max((free - 1).clamp_min(0))
        )
        query = users * (self.num_items + 1) + r
        below = torch.searchsorted(self.keys, query, right=True) - self.starts[users]
        return torch.where(full, r, r + below)
