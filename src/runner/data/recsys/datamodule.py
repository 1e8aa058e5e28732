"""Lightning data module for implicit-feedback recommendation (NLGCL card, "Protocol").

It reads the data once at construction (RecBole ``.inter`` or LightGCN ``train.txt``/``test.txt``),
applies the card's filters, splits per user 80/10/10 (seeded) and keeps the three parts as tensors.
Training batches are *index ranges* ``{"start", "end"}`` into a permutation the method draws on the
device each epoch (no per-sample Python work); evaluation batches are ranges of user ids (chunks
of the full-sort evaluation), under DDP dealt out to the ranks without repeats (RankRangeBatches).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from runner.data.loading import loader_generator
from runner.data.recsys.readers import (
    Interactions,
    filter_by_rating,
    k_core_filter,
    read_atomic_inter,
    read_lightgcn_txt,
    split_per_user,
)
from runner.data.twin import data_root
from runner.errors import invalid_value, missing_dataset_root

log = logging.getLogger("runner.data")

__all__ = ["RecsysSplit", "RecsysDataModule", "RangeBatches", "RankRangeBatches"]

FORMATS = ("atomic", "lightgcn")


class RecsysSplit:
    """Train / val / test interactions as ``LongTensor[2, n]`` (row 0 users, row 1 items).

    Each part is sorted by (user, item), so a user's interactions are one contiguous slice.
    """

    def __init__(self, num_users: int, num_items: int, parts: Mapping[str, torch.Tensor]):
        self.num_users = int(num_users)
        self.num_items = int(num_items)
        self.parts = {name: _sorted_pairs(pairs, self.num_items) for name, pairs in parts.items()}

    @property
    def train(self) -> torch.Tensor:
        return self.parts["train"]

    @property
    def val(self) -> torch.Tensor:
        return self.parts["val"]

    @property
    def test(self) -> torch.Tensor:
        return self.parts["test"]

    def stats(self) -> dict[str, int]:
        total = sum(p.shape[1] for p in self.parts.values())
        return {"num_users": self.num_users, "num_items": self.num_items, "num_interactions": total}


def _sorted_pairs(pairs: torch.Tensor, num_items: int) -> torch.Tensor:
    pairs = torch.as_tensor(pairs, dtype=torch.long).reshape(2, -1)
    order = torch.argsort(pairs[0] * num_items + pairs[1])
    return pairs[:, order].contiguous()


class RangeBatches(Dataset):
    """``len = ceil(total / size)`` batches; batch ``b`` is ``{"start": b*size, "end": min(.., total)}``."""

    def __init__(self, total: int, size: int):
        self.total, self.size = int(total), int(size)

    def __len__(self) -> int:
        return math.ceil(self.total / self.size)

    def __getitem__(self, b: int) -> dict[str, int]:
        if not 0 <= b < len(self):
            raise IndexError(b)
        return {"start": b * self.size, "end": min((b + 1) * self.size, self.total)}


class RankRangeBatches(IterableDataset):
    """The batches ``rank, rank + world, ...`` of :class:`RangeBatches`: under DDP every rank evaluates
    its own users and each user exactly once. An iterable dataset, so Lightning injects no
    ``DistributedSampler`` (which pads the last ranks with repeated batches, i.e. counts some users
    twice); the metric sums are then reduced over the ranks by torchmetrics."""

    def __init__(self, total: int, size: int, rank: int, world_size: int):
        self.batches = RangeBatches(total, size)
        self.rank, self.world_size = int(rank), int(world_size)

    def __len__(self) -> int:
        return len(range(self.rank, len(self.batches), self.world_size))

    def __iter__(self):
        for b in range(self.rank, len(self.batches), self.world_size):
            yield self.batches[b]


class RecsysDataModule(L.LightningDataModule):
    """Recommendation data (real files or their synthetic twin) for :mod:`runner.methods.recsys`.

    Args:
        name: dataset name; the atomic file is ``<root>/<name>.inter``.
        root: folder of the real data.
        format: ``atomic`` (RecBole ``.inter``) or ``lightgcn`` (``train.txt`` + ``test.txt``; the
            file's test set is kept and validation is carved from train per user).
        synthetic: use ``twin`` (written as ``.inter`` under ``synthetic_root``) instead of ``root``.
        user_k_core / item_k_core: iterative k-core filter (null = none).
        rating_threshold: keep interactions with rating >= threshold (null = keep all); applied before
            the k-core filter, as RecBole applies ``val_interval`` before ``*_inter_num_interval``.
        split: train / val / test ratios of the per-user random split.
        split_seed: seed of that split (RecBole's default seed, 2020; independent of the run seed).
        expected: ``{num_users, num_items, num_interactions}`` of the real data after filtering, as
            published; a mismatch is warned about.
        twin_expected: the same for the synthetic twin (its own sizes), checked on the twin.
        warmup_epochs: the dataset's early-stopping warm-up (official ``warm_up_step``: no early stop
            before it; Yelp 40, else the model's 30); read by ``conf/callbacks/recsys_early_stopping``
            and otherwise unused here.
        batch_size: training interactions per step (card: 4096).
        twin_batch_size: the batch size used instead on the synthetic twin (null = ``batch_size``):
            the twin is ~100x smaller, and the in-batch InfoNCE terms cost O(batch^2) per step.
        eval_batch_users: users per full-sort evaluation chunk.
        num_workers, pin_memory, persistent_workers: accepted for the shared debug configs and
            ignored -- batches are index ranges, built in the main process.
    """

    def __init__(
        self,
        name: str,
        root: str | None = None,
        format: str = "atomic",
        synthetic: bool = False,
        synthetic_root: str | None = None,
        twin: Any = None,
        user_k_core: int | None = None,
        item_k_core: int | None = None,
        rating_threshold: float | None = None,
        split: Sequence[float] = (0.8, 0.1, 0.1),
        split_seed: int = 2020,
        expected: Mapping[str, int] | None = None,
        expected_tolerance: float = 0.01,
        twin_expected: Mapping[str, int] | None = None,
        warmup_epochs: int | None = None,
        batch_size: int = 4096,
        twin_batch_size: int | None = None,
        eval_batch_users: int = 1024,
        user_field: str = "user_id",
        item_field: str = "item_id",
        num_workers: int = 0,
        pin_memory: bool = False,
        persistent_workers: bool = False,
    ):
        super().__init__()
        if format not in FORMATS:
            raise invalid_value("dataset.format", format, "one of " + ", ".join(FORMATS))
        if len(split) != 3 or min(split) < 0 or split[0] <= 0:
            raise invalid_value("dataset.split", list(split), "three ratios [train, val, test], train > 0")
        self.name = str(name)
        self.synthetic = bool(synthetic)
        self.batch_size = int(twin_batch_size if synthetic and twin_batch_size else batch_size)
        self.eval_batch_users = int(eval_batch_users)
        self.root_used = data_root(self.synthetic, root, twin, synthetic_root)
        if self.synthetic:
            format = "atomic"
        else:
            self.root_used = os.path.abspath(os.path.expanduser(self.root_used))
            looked_at = (
                os.path.join(self.root_used, f"{self.name}.inter") if format == "atomic" else self.root_used
            )
            if not os.path.exists(looked_at):
                raise missing_dataset_root(self.name, looked_at)
        fixed_test = None
        if format == "atomic":
            data = read_atomic_inter(
                os.path.join(self.root_used, f"{self.name}.inter"), user_field, item_field
            )
        else:
            data, fixed_test = read_lightgcn_txt(self.root_used)
        self.split = self._prepare(
            data, fixed_test, rating_threshold, user_k_core, item_k_core, split, split_seed
        )
        stats = self.split.stats()
        log.info("%s%s: %s", self.name, " (twin)" if self.synthetic else "", stats)
        self.warmup_epochs = None if warmup_epochs is None else int(warmup_epochs)
        reference = twin_expected if self.synthetic else expected
        if reference:
            self._check_expected(stats, dict(reference), float(expected_tolerance))

    @staticmethod
    def _prepare(
        data: Interactions, fixed_test, rating_threshold, user_k, item_k, split, seed
    ) -> RecsysSplit:
        if fixed_test is not None:
            # keep the file's split through the filters: carry it in the rating column
            data.rating = fixed_test.astype(np.float64) + 10.0
            data = k_core_filter(data, user_k, item_k)
            is_test = data.rating >= 11.0
            train_part = np.flatnonzero(~is_test)
            ratio_val = split[1] / max(split[0] + split[1], 1e-12)
            sub = split_per_user(data.user[train_part], data.num_users, (1 - ratio_val, ratio_val), seed)
            part = np.full(len(data), 2, np.int64)
            part[train_part] = sub
        else:
            data = filter_by_rating(data, rating_threshold)
            data = k_core_filter(data, user_k, item_k)
            part = split_per_user(data.user, data.num_users, tuple(split), seed)
        pairs = torch.from_numpy(np.stack([data.user, data.item]))
        parts = {
            name: pairs[:, torch.from_numpy(part == j)] for j, name in enumerate(("train", "val", "test"))
        }
        return RecsysSplit(data.num_users, data.num_items, parts)

    def _check_expected(self, stats: dict[str, int], expected: dict[str, int], tolerance: float) -> None:
        for key, want in expected.items():
            got = stats.get(key)
            if want and got is not None and abs(got - want) > tolerance * want:
                log.warning(
                    "%s%s: %s=%d after filtering, %s %d; check %s and the filters "
                    "(user_k_core / item_k_core / rating_threshold)",
                    self.name,
                    " (twin)" if self.synthetic else "",
                    key,
                    got,
                    "dataset.twin_expected says" if self.synthetic else "the paper reports",
                    want,
                    "dataset.twin" if self.synthetic else "dataset.root",
                )

    @property
    def num_users(self) -> int:
        return self.split.num_users

    @property
    def num_items(self) -> int:
        return self.split.num_items

    def network_kwargs(self) -> dict[str, Any]:
        """What the recommenders need: sizes and the training graph (``LongTensor[2, E]``: users, items)."""
        return {"num_users": self.num_users, "num_items": self.num_items, "train_graph": self.split.train}

    def _loader(self, dataset: Dataset) -> DataLoader:
        # a private generator: creating an iterator then never draws from the global RNG, whose stream
        # the recommenders use (runner.methods.recsys.module docstring: exact resume); the batches are
        # plain ranges, so its seed is never used for anything else
        return DataLoader(
            dataset, batch_size=None, shuffle=False, num_workers=0, generator=loader_generator(0)
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(RangeBatches(self.split.train.shape[1], self.batch_size))

    def _eval_batches(self) -> Dataset:
        """User chunks of the full-sort evaluation; split over the ranks under DDP (see RankRangeBatches)."""
        trainer = getattr(self, "trainer", None)
        world_size = int(getattr(trainer, "world_size", 1) or 1) if trainer is not None else 1
        if world_size > 1:
            return RankRangeBatches(self.num_users, self.eval_batch_users, trainer.global_rank, world_size)
        return RangeBatches(self.num_users, self.eval_batch_users)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._eval_batches())

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._eval_batches())
