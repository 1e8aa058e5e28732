"""Seeded splits of a labelled training set across clients.

Every partitioner is called as ``partitioner(labels, num_clients, seed, domains=None)`` and returns a
list of ``num_clients`` sorted index arrays (``numpy.int64``) into ``labels``. Configs select one with
``_target_`` + ``_partial_: true`` (e.g. ``runner.federated.partition.Dirichlet``).

* :class:`IID`: a uniform random split into near-equal parts.
* :class:`Dirichlet`: per class, proportions ``~ Dir(α·1)`` over clients (Hsu et al. 2019); redrawn
  until every client holds at least ``min_size`` samples, at most ``max_retries`` times, then a
  :class:`~runner.errors.UserError`.
* :class:`Pathological`: each client gets shards of ``classes_per_client`` classes (McMahan et al. 2017).
* :class:`LongTailDirichlet`: first subsample each class to ``n_c = n_max · IF^(−c/(C−1))`` (Cao et al.
  2019, the FedSM card), then split with :class:`Dirichlet`.
* :class:`ByDomain`: one client per domain label (FedPall's setting).

:func:`class_count_table` gives the per-client class counts that runs log and save.
"""

from __future__ import annotations

import numpy as np

from runner.errors import UserError, invalid_value

__all__ = ["IID", "ByDomain", "Dirichlet", "LongTailDirichlet", "Pathological", "class_count_table"]


def class_count_table(labels: np.ndarray, parts: list[np.ndarray], num_classes: int) -> np.ndarray:
    """``(num_clients, num_classes)`` sample counts."""
    return np.stack([np.bincount(labels[p], minlength=num_classes) for p in parts]).astype(np.int64)


class IID:
    """Uniform random split into ``num_clients`` parts whose sizes differ by at most one."""

    def __call__(self, labels, num_clients, seed, domains=None):
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(labels))
        return [np.sort(p) for p in np.array_split(order, num_clients)]


class Dirichlet:
    """Label-skewed split: class ``c``'s samples are divided by ``p_c ~ Dir(α)`` over the clients."""

    def __init__(self, alpha: float = 0.5, min_size: int = 10, max_retries: int = 100) -> None:
        if alpha <= 0:
            raise invalid_value("dataset.partition.alpha", alpha, "a number > 0")
        self.alpha = float(alpha)
        self.min_size = int(min_size)
        self.max_retries = int(max_retries)

    def __call__(self, labels, num_clients, seed, domains=None):
        rng = np.random.default_rng(seed)
        classes = np.unique(labels)
        smallest = 0
        for _ in range(self.max_retries):
            parts: list[list[np.ndarray]] = [[] for _ in range(num_clients)]
            for c in classes:
                idx = rng.permutation(np.flatnonzero(labels == c))
                shares = rng.dirichlet(np.full(num_clients, self.alpha))
                cuts = (np.cumsum(shares)[:-1] * len(idx)).astype(np.int64)
                for client, chunk in enumerate(np.split(idx, cuts)):
                    parts[client].append(chunk)
            out = [np.sort(np.concatenate(p)) for p in parts]
            smallest = min(len(p) for p in out)
            if smallest >= self.min_size:
                return out
        raise UserError(
            f"Dirichlet partition (alpha={self.alpha}) gave some client fewer than "
            f"dataset.partition.min_size={self.min_size} samples in {self.max_retries} tries "
            f"(smallest: {smallest} of {len(labels)} samples over {num_clients} clients); raise "
            "dataset.partition.alpha, lower min_size or num_clients, or raise max_retries"
        )


class Pathological:
    """Each client receives ``classes_per_client`` shards; shards are contiguous runs of the
    label-sorted data, so a client sees about ``classes_per_client`` classes (McMahan et al. 2017)."""

    def __init__(self, classes_per_client: int = 2) -> None:
        self.classes_per_client = int(classes_per_client)

    def __call__(self, labels, num_clients, seed, domains=None):
        rng = np.random.default_rng(seed)
        num_shards = num_clients * self.classes_per_client
        order = np.argsort(labels + rng.random(len(labels)) * 0.5, kind="stable")
        shards = np.array_split(order, num_shards)
        assignment = rng.permutation(num_shards).reshape(num_clients, self.classes_per_client)
        return [np.sort(np.concatenate([shards[s] for s in row])) for row in assignment]


class LongTailDirichlet:
    """Long-tail subsampling with imbalance factor ``IF`` (class ``c`` keeps
    ``n_max · IF^(−c/(C−1))`` samples, class order as labelled) followed by a Dirichlet split."""

    def __init__(
        self, imbalance_factor: float = 100.0, alpha: float = 0.5, min_size: int = 10, max_retries: int = 100
    ) -> None:
        self.imbalance_factor = float(imbalance_factor)
        self.dirichlet = Dirichlet(alpha, min_size, max_retries)

    def keep(self, labels: np.ndarray, seed: int) -> np.ndarray:
        """Indices kept by the long-tail subsampling."""
        rng = np.random.default_rng(seed + 7919)
        classes = np.unique(labels)
        n_max = max(int((labels == c).sum()) for c in classes)
        denom = max(len(classes) - 1, 1)
        kept = []
        for rank, c in enumerate(classes):
            idx = np.flatnonzero(labels == c)
            n_c = max(1, int(n_max * self.imbalance_factor ** (-rank / denom)))
            kept.append(rng.permutation(idx)[: min(n_c, len(idx))])
        return np.sort(np.concatenate(kept))

    def __call__(self, labels, num_clients, seed, domains=None):
        kept = self.keep(labels, seed)
        parts = self.dirichlet(labels[kept], num_clients, seed)
        return [kept[p] for p in parts]


class ByDomain:
    """One client per domain: client ``k`` holds every sample whose domain label is ``k``."""

    def __call__(self, labels, num_clients, seed, domains=None):
        if domains is None:
            raise invalid_value("dataset.partition", "ByDomain", "needs a dataset with domain labels")
        found = np.unique(domains)
        if len(found) != num_clients:
            raise invalid_value(
                "dataset.num_clients", num_clients, f"must equal the number of domains ({len(found)})"
            )
        return [np.flatnonzero(domains == d) for d in found]
