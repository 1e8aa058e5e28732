"""Lightning data module of federated experiments.

A reader (``reader(root=...)``, Hydra ``_partial_``) loads a dataset as tensors
(:class:`~runner.data.images.ArraySplits`); ``dataset.synthetic=true`` first writes the twin in the
real format (``twin.ensure(synthetic_root)``) and reads it with the same reader. A seeded partitioner
splits the training set over ``num_clients`` clients.

Loaders: ``train`` yields round indices, ``rounds_per_epoch`` per epoch (one training step = one
round; the clients' data are preloaded tensors handed to the module by :meth:`client_data`);
``test`` yields ``(x, y)`` batches of the global test set. ``val`` yields the same test set when
``val_fraction = 0`` (the FL papers have no separate validation split: ``val/acc`` is then test
accuracy tracked per epoch, and choosing a "best round" on it looks at the test data); with
``val_fraction > 0`` each client holds out that seeded fraction of its training partition as its
validation split (:meth:`client_val_data`, not trained on), ``val`` yields their union, and the
personalised ``val/personal_acc`` is measured on each client's own validation split.

Personalised evaluation (:meth:`client_test_data`): each client's own test split, from

* the domain's test samples when the partition is one client per domain (``ByDomain``) and the
  dataset has domain labels (Digits-5, Office-Caltech-10, PACS);
* otherwise, with ``client_test_fraction > 0``, a seeded per-client hold-out of that fraction of the
  client's partition (PFLlib's per-client train / test split, so a client's test split follows its
  own label distribution); the held-out samples are not trained on.

Long-tail reporting (:meth:`class_groups`): ``class_groups=terciles`` splits the classes, sorted by
their training count, into many / medium / few-shot thirds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import numpy as np
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from runner.data.twin import data_root
from runner.errors import invalid_value

from .partition import IID, ByDomain, class_count_table
from .simulator import ClientData

__all__ = ["FederatedDataModule"]


class _RoundIndices(IterableDataset):
    """The round indices of one epoch. Iterable, so that under DDP Lightning does not shard it:
    every rank runs every round (and trains its share of the round's clients)."""

    def __init__(self, count: int) -> None:
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __iter__(self):
        return iter(range(self.count))


class FederatedDataModule(L.LightningDataModule):
    """Clients' training data + the global test set; see the module docstring.

    Args:
        reader: partial constructor, ``reader(root=...)`` → object with ``load() -> ArraySplits``.
        root / synthetic / synthetic_root / twin: real data location, or the twin and where to write it.
        num_clients: number of clients; partition: ``partition(labels, num_clients, seed)`` → index lists.
        rounds_per_epoch: rounds per Lightning epoch (validation runs after each epoch).
        eval_batch_size: batch size of the test-set loaders.
        seed: partition seed.
        client_test_fraction: per-client hold-out for personalised evaluation (module docstring).
        class_groups: ``null`` or ``terciles`` (many / medium / few-shot classes by training count).
        val_fraction: per-client validation hold-out of the training partition (module docstring).
        num_workers, persistent_workers, pin_memory: unused (see __init__).
    """

    def __init__(
        self,
        reader: Callable[..., Any],
        root: str | None = None,
        synthetic: bool = False,
        synthetic_root: str | None = None,
        twin: Any = None,
        num_clients: int = 10,
        partition: Callable[..., list[np.ndarray]] | None = None,
        rounds_per_epoch: int = 10,
        eval_batch_size: int = 1000,
        seed: int = 0,
        client_test_fraction: float = 0.0,
        class_groups: str | None = None,
        val_fraction: float = 0.0,
        num_workers: int = 0,
        persistent_workers: bool = False,
        pin_memory: bool = False,
    ) -> None:
        super().__init__()
        # num_workers / persistent_workers / pin_memory: accepted so shared debug configs apply; the
        # clients' data are preloaded tensors and the eval loaders read a TensorDataset in-process
        if int(num_clients) < 1:
            raise invalid_value("dataset.num_clients", num_clients, "an integer >= 1")
        if int(rounds_per_epoch) < 1:
            raise invalid_value("dataset.rounds_per_epoch", rounds_per_epoch, "an integer >= 1")
        self.root_used = data_root(synthetic, root, twin, synthetic_root)
        self.splits = reader(root=self.root_used).load()
        self.num_clients = int(num_clients)
        self.partition = partition or IID()
        self.rounds_per_epoch = int(rounds_per_epoch)
        self.eval_batch_size = int(eval_batch_size)
        self.seed = int(seed)
        if not 0.0 <= float(client_test_fraction) < 1.0:
            raise invalid_value("dataset.client_test_fraction", client_test_fraction, "a number in [0, 1)")
        self.client_test_fraction = float(client_test_fraction)
        if not 0.0 <= float(val_fraction) < 1.0:
            raise invalid_value("dataset.val_fraction", val_fraction, "a number in [0, 1)")
        self.val_fraction = float(val_fraction)
        self.val_parts: list[np.ndarray] | None = None
        if class_groups not in (None, "terciles"):
            raise invalid_value("dataset.class_groups", class_groups, "null or terciles")
        self.class_groups_rule = class_groups
        self.parts: list[np.ndarray] | None = None
        self.test_parts: list[np.ndarray] | None = None

    @property
    def by_domain(self) -> bool:
        return isinstance(self.partition, ByDomain)

    @property
    def num_classes(self) -> int:
        return len(self.splits.class_names)

    def network_kwargs(self) -> dict[str, Any]:
        """Properties networks and the method may take: classes, input shape / channels / features."""
        shape = tuple(self.splits.x_train.shape[1:])
        props: dict[str, Any] = {"num_classes": self.num_classes, "in_features": int(np.prod(shape))}
        if len(shape) == 3:
            props.update(in_channels=shape[0], image_size=shape[1])
        return props

    def setup(self, stage: str | None = None) -> None:
        if self.parts is None:
            labels = self.splits.y_train.numpy()
            domains = self.splits.domain_train
            if domains is not None:
                parts = self.partition(labels, self.num_clients, self.seed, domains=domains.numpy())
            else:
                parts = self.partition(labels, self.num_clients, self.seed)
            empty = [i for i, part in enumerate(parts) if len(part) == 0]
            if empty:
                raise invalid_value(
                    "dataset.num_clients",
                    self.num_clients,
                    f"at most as many clients as the partition can fill: clients {empty[:5]} got no sample",
                )
            self.parts, self.test_parts = self._client_test_split(parts)
            if self.val_fraction > 0:
                self.parts, self.val_parts = self._hold_out(
                    self.parts, self.val_fraction, self.seed + 104_729
                )

    def _client_test_split(self, parts: list[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray] | None]:
        """(training parts, per-client test parts or None); see the module docstring."""
        if self.by_domain and self.splits.domain_test is not None:
            test_domains = self.splits.domain_test.numpy()
            return parts, [
                np.flatnonzero(test_domains == d) for d in np.unique(self.splits.domain_train.numpy())
            ]
        if self.client_test_fraction == 0.0:
            return parts, None
        return self._hold_out(parts, self.client_test_fraction, self.seed + 7_919)

    @staticmethod
    def _hold_out(
        parts: list[np.ndarray], fraction: float, seed: int
    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """(kept parts, held-out parts): a seeded ``fraction`` of each part (at least one sample,
        and at least one kept, when the part has two or more)."""
        rng = np.random.default_rng(seed)
        kept, held_out = [], []
        for part in parts:
            shuffled = rng.permutation(part)
            held = int(round(fraction * len(part)))
            held = min(max(held, 1), len(part) - 1) if len(part) > 1 else 0
            held_out.append(np.sort(shuffled[:held]))
            kept.append(np.sort(shuffled[held:]))
        return kept, held_out

    def class_counts(self) -> np.ndarray:
        """``(num_clients, num_classes)`` training-sample counts."""
        self.setup()
        return class_count_table(self.splits.y_train.numpy(), self.parts, self.num_classes)

    def client_data(self) -> ClientData:
        self.setup()
        return ClientData.from_parts(self.splits.x_train, self.splits.y_train, self.parts)

    def client_test_data(self) -> ClientData | None:
        """Each client's own test split (personalised evaluation), or None when there is none."""
        self.setup()
        if self.test_parts is None:
            return None
        if self.by_domain and self.splits.domain_test is not None:
            return ClientData.from_parts(self.splits.x_test, self.splits.y_test, self.test_parts)
        return ClientData.from_parts(self.splits.x_train, self.splits.y_train, self.test_parts)

    def client_val_data(self) -> ClientData | None:
        """Each client's own validation split (``val_fraction > 0``), or None."""
        self.setup()
        if self.val_parts is None:
            return None
        return ClientData.from_parts(self.splits.x_train, self.splits.y_train, self.val_parts)

    def class_groups(self) -> dict[str, list[int]] | None:
        """``{many|medium|few: class ids}`` by training count (``class_groups=terciles``), else None."""
        if self.class_groups_rule is None:
            return None
        counts = np.bincount(self.splits.y_train.numpy(), minlength=self.num_classes)
        order = np.argsort(-counts, kind="stable")
        thirds = np.array_split(order, 3)
        return {
            name: sorted(int(c) for c in group)
            for name, group in zip(("many", "medium", "few"), thirds, strict=True)
        }

    def train_dataloader(self) -> DataLoader:
        return DataLoader(_RoundIndices(self.rounds_per_epoch), batch_size=None, shuffle=False)

    def _eval_loader(self) -> DataLoader:
        dataset = TensorDataset(self.splits.x_test, self.splits.y_test)
        return DataLoader(dataset, batch_size=self.eval_batch_size, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        self.setup()
        if self.val_parts is None:
            return self._eval_loader()
        index = np.concatenate(self.val_parts)
        dataset = TensorDataset(self.splits.x_train[index], self.splits.y_train[index])
        return DataLoader(dataset, batch_size=self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader()
