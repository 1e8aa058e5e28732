"""CIFAR-10-C as a federated dataset (CO-PFL card; FedSelect's CIFAR-10-C setting).

Real format (Hendrycks & Dietterich 2019): ``<root>/<corruption>.npy`` (``uint8 [5·N, 32, 32, 3]``,
severities 1…5 stacked) and ``<root>/labels.npy``, read by
:func:`~runner.data.domains.cifar10c.read_cifar10c`. The pool is every chosen ``corruption × severity``
set; each set is one *domain* (``domain_train`` / ``domain_test`` = its index, ``domain_names`` =
``"<corruption>@<severity>"``) and is split, seeded and class-stratified, into ``1 − test_fraction``
training and ``test_fraction`` global-test images (CIFAR-10-C has no training split). Images are
normalised with the CIFAR-10 channel statistics. With a label partition (Dirichlet / pathological)
the clients mix corruptions; with :class:`~runner.federated.partition.ByDomain` each client is one
corruption × severity (``num_clients`` = the number of sets) and its test split is that set's test part.

The twin (:class:`CIFAR10CTwinFromCifarTwin`) first writes the CIFAR-10 procedural twin (pickle
format), then applies the real corruption functions to its test batch
(:class:`~runner.data.domains.cifar10c.CIFAR10CTwin`), so this reader runs unchanged on it.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from runner.data.domains.cifar10c import CORRUPTIONS, SEVERITIES, CIFAR10CTwin, read_cifar10c
from runner.data.images.cifar import CIFAR_MEAN, CIFAR_STD, ProceduralCifarTwin
from runner.data.images.common import ArraySplits
from runner.errors import invalid_value

__all__ = ["CIFAR10CTwinFromCifarTwin", "Cifar10CReader", "split_per_class"]


def split_per_class(labels: np.ndarray, test_fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Boolean test mask holding out ``test_fraction`` of every class (seeded)."""
    test = np.zeros(len(labels), dtype=bool)
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        test[rng.permutation(members)[: int(round(test_fraction * len(members)))]] = True
    return test


def normalised_cifar(images: np.ndarray) -> torch.Tensor:
    """uint8 ``[N, H, W, 3]`` → float ``[N, 3, H, W]`` normalised with the CIFAR-10 statistics."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)) / torch.tensor(CIFAR_STD).view(1, 3, 1, 1)


class Cifar10CReader:
    """CIFAR-10-C ``.npy`` files → :class:`ArraySplits` with one domain per corruption × severity.

    Args:
        root: folder with ``<corruption>.npy`` and ``labels.npy``.
        corruptions: corruption file names to pool.
        severities: severities (1…5) to pool.
        test_fraction: per-set, per-class fraction held out as the global test split.
        per_set: keep at most this many images of each set (seeded, before the split; null: all).
        seed: seed of the subsample and the split.
    """

    def __init__(
        self,
        root: str,
        corruptions: list[str] | tuple[str, ...] = tuple(CORRUPTIONS),
        severities: list[int] | tuple[int, ...] = SEVERITIES,
        test_fraction: float = 0.2,
        per_set: int | None = None,
        seed: int = 0,
    ) -> None:
        if not 0.0 < float(test_fraction) < 1.0:
            raise invalid_value("dataset.reader.test_fraction", test_fraction, "a number in (0, 1)")
        if not corruptions:
            raise invalid_value("dataset.reader.corruptions", corruptions, "a non-empty list")
        self.root = str(root)
        self.corruptions = list(corruptions)
        self.severities = [int(s) for s in severities]
        self.test_fraction = float(test_fraction)
        self.per_set = None if per_set is None else int(per_set)
        self.seed = int(seed)

    def load(self) -> ArraySplits:
        sets = read_cifar10c(self.root, self.corruptions, self.severities)
        rng = np.random.default_rng(self.seed)
        parts: dict[str, list[np.ndarray]] = {k: [] for k in ("xtr", "ytr", "dtr", "xte", "yte", "dte")}
        names = list(sets)
        for k, name in enumerate(names):
            images, labels = sets[name].images, sets[name].labels
            if self.per_set is not None and len(labels) > self.per_set:
                keep = np.sort(rng.permutation(len(labels))[: self.per_set])
                images, labels = images[keep], labels[keep]
            test = split_per_class(labels, self.test_fraction, rng)
            for prefix, rows in (("tr", ~test), ("te", test)):
                parts["x" + prefix].append(images[rows])
                parts["y" + prefix].append(labels[rows])
                parts["d" + prefix].append(np.full(int(rows.sum()), k, dtype=np.int64))
        cat = {k: np.concatenate(v) for k, v in parts.items()}
        return ArraySplits(
            x_train=normalised_cifar(cat["xtr"]),
            y_train=torch.from_numpy(cat["ytr"]),
            x_test=normalised_cifar(cat["xte"]),
            y_test=torch.from_numpy(cat["yte"]),
            class_names=list(sets[names[0]].class_names),
            domain_train=torch.from_numpy(cat["dtr"]),
            domain_test=torch.from_numpy(cat["dte"]),
            domain_names=names,
        )


class CIFAR10CTwinFromCifarTwin(CIFAR10CTwin):
    """The CIFAR-10-C twin built on the CIFAR-10 procedural twin (written first into ``cifar_root``).

    Args:
        cifar_root: where the CIFAR-10 twin lives (its ``test_batch`` is corrupted).
        cifar_twin: the :class:`~runner.data.images.cifar.ProceduralCifarTwin` to ensure there.
        corruptions, seed: as :class:`~runner.data.domains.cifar10c.CIFAR10CTwin`.
    """

    def __init__(
        self,
        cifar_root: str,
        cifar_twin: ProceduralCifarTwin,
        corruptions: list[str] | tuple[str, ...] = tuple(CORRUPTIONS),
        seed: int = 0,
    ) -> None:
        super().__init__(cifar_root, corruptions, seed)
        self.cifar_twin = cifar_twin

    def recipe(self) -> dict:
        recipe = super().recipe()
        recipe.pop("source_mtime", None)  # the source is the twin's recipe instead
        recipe["cifar_twin"] = self.cifar_twin.recipe()
        return recipe

    def write(self, out: str) -> None:
        # the source twin's folder: cifar_root, or beside it when cifar_root holds another recipe
        source_root = self.cifar_twin.ensure(self.cifar_root)
        nested = os.path.join(source_root, "cifar-10-batches-py")
        source = nested if os.path.isdir(nested) else source_root
        CIFAR10CTwin(source, self.corruptions, self.seed).write(out)
