"""Lightning data module of federated experiments.

A reader (``reader(root=...)``, Hydra ``_partial_``) loads a dataset as tensors
(:class:`~runner.data.images.ArraySplits`); ``dataset.synthetic=true`` first writes the twin in the
real format (``twin.ensure(synthetic_root)``) and reads it with the same reader. A seeded partitioner
splits the training set over ``num_clients`` clients.

Loaders: ``train`` yields round indices, ``rounds_per_epoch`` per epoch (one training step = one
round; the clients' data are preloaded tensors handed to the module by :meth:`client_data`);
``val`` and ``test`` yield ``(x, y)`` batches of the global test set (the datasets have no separate
validation split, as in the FL papers: ``val/acc`` is test accuracy tracked per epoch).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import numpy as np
from torch.utils.data import DataLoader, Dataset, TensorDataset

from runner.data.twin import data_root
from runner.errors import invalid_value

from .partition import IID, class_count_table
from .simulator import ClientData

__all__ = ["FederatedDataModule"]


class _RoundIndices(Dataset):
    def __init__(self, count: int) -> None:
        self.count = count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> int:
        return i


class FederatedDataModule(L.LightningDataModule):
    """Clients' training data + the global test set; see the module docstring.

    Args:
        reader: partial constructor, ``reader(root=...)`` → object with ``load() -> ArraySplits``.
        root / synthetic / synthetic_root / twin: real data location, or the twin and where to write it.
        num_clients: number of clients; partition: ``partition(labels, num_clients, seed)`` → index lists.
        rounds_per_epoch: rounds per Lightning epoch (validation runs after each epoch).
        eval_batch_size: batch size of the test-set loaders.
        seed: partition seed.
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
        self.parts: list[np.ndarray] | None = None

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
            parts = self.partition(labels, self.num_clients, self.seed)
            empty = [i for i, part in enumerate(parts) if len(part) == 0]
            if empty:
                raise invalid_value(
                    "dataset.num_clients",
                    self.num_clients,
                    f"at most as many clients as the partition can fill: clients {empty[:5]} got no sample",
                )
            self.parts = parts

    def class_counts(self) -> np.ndarray:
        """``(num_clients, num_classes)`` training-sample counts."""
        self.setup()
        return class_count_table(self.splits.y_train.numpy(), self.parts, self.num_classes)

    def client_data(self) -> ClientData:
        self.setup()
        return ClientData.from_parts(self.splits.x_train, self.splits.y_train, self.parts)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(_RoundIndices(self.rounds_per_epoch), batch_size=None, shuffle=False)

    def _eval_loader(self) -> DataLoader:
        dataset = TensorDataset(self.splits.x_test, self.splits.y_test)
        return DataLoader(dataset, batch_size=self.eval_batch_size, shuffle=False)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader()

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader()
