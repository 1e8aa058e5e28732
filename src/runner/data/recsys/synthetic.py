"""Synthetic twin of a recommendation dataset, written as a RecBole atomic ``.inter`` file.

NLGCL card ("Data", "What the twin must show"): a latent-factor generator with user communities,
power-law item popularity and noise, so that (a) popularity alone is a real but weak baseline
(MostPop), (b) the community structure is what collaborative filtering -- and neighbour-layer
smoothing on the user-item graph -- can learn beyond popularity.

Generative story (all seeded by ``seed``):

* ``num_communities`` communities with centroids ``c_k ~ N(0, I_d)``;
* each item belongs to one community, ``v_i = c_{k(i)} + item_spread * N(0, I_d)``, and has a
  power-law popularity ``p_i ∝ rank_i^(-popularity_exponent)`` (ranks shuffled across communities);
* each user mixes a primary and a secondary community (weight ``1 - secondary_weight`` /
  ``secondary_weight``) plus ``user_spread * N(0, I_d)``;
* a user's number of interactions is ``min_interactions + Geometric`` with mean
  ``interactions_per_user``; the items are drawn without replacement (Gumbel top-k) from
  ``softmax(affinity * <u, v_i> / sqrt(d) + popularity_weight * log p_i)``;
* a fraction ``noise`` of every user's interactions is replaced by popularity-only draws (clicks
  unrelated to taste); those get ratings 1-2, taste-driven ones 3-5.

``size: large`` scales users and items by ``large_scale`` (a GPU-sized twin); ``small`` is CPU-sized.
The file is written atomically and cached: ``recipe.json`` holds a hash of every parameter.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch

from runner.data.twin import CachedTwin
from runner.errors import invalid_value

log = logging.getLogger("runner.data")

__all__ = ["RECIPE_VERSION", "RecsysTwin"]

RECIPE_VERSION = 1
HEADER = "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"


class RecsysTwin(CachedTwin):
    """A seeded synthetic ``<name>.inter`` (see the module docstring for the generative story)."""

    def __init__(
        self,
        name: str,
        num_users: int = 2000,
        num_items: int = 1500,
        num_communities: int = 20,
        interactions_per_user: float = 40.0,
        min_interactions: int = 10,
        latent_dim: int = 16,
        affinity: float = 6.0,
        popularity_exponent: float = 0.9,
        popularity_weight: float = 1.0,
        secondary_weight: float = 0.3,
        item_spread: float = 0.5,
        user_spread: float = 0.5,
        noise: float = 0.1,
        size: str = "small",
        large_scale: int = 15,
        seed: int = 0,
    ):
        if size not in ("small", "large"):
            raise invalid_value("dataset.twin.size", size, "one of small, large")
        if int(num_users) < 2 or int(num_items) < 2:
            raise invalid_value("dataset.twin.num_users", num_users, "num_users and num_items >= 2")
        if not 0 <= float(noise) < 1:
            raise invalid_value("dataset.twin.noise", noise, "a number in [0, 1)")
        if not 1 <= int(min_interactions) <= float(interactions_per_user):
            raise invalid_value(
                "dataset.twin.min_interactions",
                min_interactions,
                "1 <= min_interactions <= interactions_per_user",
            )
        scale = int(large_scale) if size == "large" else 1
        self.name = str(name)
        self.num_users = int(num_users) * scale
        self.num_items = int(num_items) * scale
        if int(interactions_per_user) >= self.num_items:
            raise invalid_value(
                "dataset.twin.interactions_per_user", interactions_per_user, "fewer than num_items"
            )
        self.num_communities = int(num_communities)
        self.interactions_per_user = float(interactions_per_user)
        self.min_interactions = int(min_interactions)
        self.latent_dim = int(latent_dim)
        self.affinity = float(affinity)
        self.popularity_exponent = float(popularity_exponent)
        self.popularity_weight = float(popularity_weight)
        self.secondary_weight = float(secondary_weight)
        self.item_spread = float(item_spread)
        self.user_spread = float(user_spread)
        self.noise = float(noise)
        self.size = size
        self.seed = int(seed)

    @property
    def file_name(self) -> str:
        return f"{self.name}.inter"

    def recipe(self) -> dict:
        """Every parameter that determines the generated file."""
        keys = (
            "name num_users num_items num_communities interactions_per_user min_interactions latent_dim "
            "affinity popularity_exponent popularity_weight secondary_weight item_spread user_spread noise seed"
        ).split()
        return {"recipe_version": RECIPE_VERSION, **{k: getattr(self, k) for k in keys}}

    @property
    def twin_name(self) -> str:
        return f"{self.name} ({self.size})"

    def is_current(self, root: str) -> bool:
        return super().is_current(root) and os.path.isfile(os.path.join(root, self.file_name))

    # ---- generation ------------------------------------------------------------------------
    def sample(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(user, item, rating, timestamp) arrays of the twin's interactions."""
        rng = np.random.default_rng(self.seed)
        d, n_users, n_items, n_comm = self.latent_dim, self.num_users, self.num_items, self.num_communities
        centroids = rng.normal(size=(n_comm, d))
        item_comm = rng.integers(0, n_comm, n_items)
        item_vec = centroids[item_comm] + self.item_spread * rng.normal(size=(n_items, d))
        ranks = rng.permutation(n_items) + 1
        log_pop = -self.popularity_exponent * np.log(ranks)
        log_pop -= np.log(np.exp(log_pop).sum())
        primary = rng.integers(0, n_comm, n_users)
        secondary = rng.integers(0, n_comm, n_users)
        user_vec = (
            (1 - self.secondary_weight) * centroids[primary]
            + self.secondary_weight * centroids[secondary]
            + self.user_spread * rng.normal(size=(n_users, d))
        )
        extra_mean = max(self.interactions_per_user - self.min_interactions, 1e-6)
        counts = self.min_interactions + rng.geometric(1.0 / (1.0 + extra_mean), n_users) - 1
        counts = np.minimum(counts, n_items // 2)
        n_noise = rng.binomial(counts, self.noise)
        n_taste = counts - n_noise

        gen = torch.Generator().manual_seed(self.seed)
        item_t = torch.from_numpy(item_vec).float()
        log_pop_t = torch.from_numpy(log_pop).float()
        users, items, ratings = [], [], []
        chunk = max(1, 2_000_000 // n_items)
        for start in range(0, n_users, chunk):
            stop = min(start + chunk, n_users)
            u = torch.from_numpy(user_vec[start:stop]).float()
            taste = self.affinity * (u @ item_t.T) / np.sqrt(d) + self.popularity_weight * log_pop_t
            gumbel = -torch.log(-torch.log(torch.rand(taste.shape, generator=gen).clamp_min(1e-12)))
            k_max = int(counts[start:stop].max())
            taste_rank = torch.topk(taste + gumbel, k_max, dim=1).indices
            # noise clicks: popularity only, drawn without replacement and not among the taste picks
            gumbel2 = -torch.log(-torch.log(torch.rand(taste.shape, generator=gen).clamp_min(1e-12)))
            noise_score = log_pop_t + gumbel2
            noise_score.scatter_(1, taste_rank, float("-inf"))
            noise_rank = torch.topk(noise_score, k_max, dim=1).indices
            pos = torch.arange(k_max)[None, :]
            take_taste = pos < torch.from_numpy(n_taste[start:stop])[:, None]
            take_noise = pos < torch.from_numpy(n_noise[start:stop])[:, None]
            rows = torch.arange(start, stop)[:, None].expand(-1, k_max)
            users += [rows[take_taste].numpy(), rows[take_noise].numpy()]
            items += [taste_rank[take_taste].numpy(), noise_rank[take_noise].numpy()]
            ratings += [
                rng.integers(3, 6, int(take_taste.sum())).astype(np.float64),
                rng.integers(1, 3, int(take_noise.sum())).astype(np.float64),
            ]
        user = np.concatenate(users)
        item = np.concatenate(items)
        rating = np.concatenate(ratings)
        timestamp = 1.5e9 + np.sort(rng.integers(0, 10**8, len(user))).astype(np.float64)
        order = rng.permutation(len(user))
        return user[order], item[order], rating[order], timestamp[order]

    def write(self, out: str) -> None:
        """Write ``<name>.inter`` into the existing directory ``out`` (the base class adds recipe.json)."""
        user, item, rating, timestamp = self.sample()
        with open(os.path.join(out, self.file_name), "w", encoding="utf-8") as fh:
            fh.write(HEADER)
            fh.writelines(
                f"{u}\t{i}\t{r:.0f}\t{t:.0f}\n"
                for u, i, r, t in zip(
                    user.tolist(), item.tolist(), rating.tolist(), timestamp.tolist(), strict=True
                )
            )
