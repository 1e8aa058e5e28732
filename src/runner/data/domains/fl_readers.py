"""Multi-domain readers for the federated feature-drift benchmarks (FedPall card: Digits-5,
Office-Caltech-10, PACS), producing :class:`~runner.data.images.common.ArraySplits` with domain labels.

Layout (FedPall's, and the twins' :class:`~runner.data.domains.digits5.Digits5Twin` /
:class:`~runner.data.domains.styled_objects.StyledObjectsTwin`)::

    <root>/<domain>/<split>/<class>/*.png

Each domain's ``train`` split is optionally subsampled (``train_fraction``; FedPall trains on 10 % of
each Digits-5 domain's training set, the official code taking one of ten pre-made partitions; here a
seeded, class-stratified random subset of that fraction), its ``test`` split is kept whole. Images are
resized to ``size`` × ``size`` RGB and normalised per channel to [-1, 1] (``(x − 0.5) / 0.5``, the
normalisation of FedPall's Digits / Office / PACS transforms). The domain index of a sample is the
position of its domain in ``domains``; with :class:`~runner.federated.partition.ByDomain` domain ``k``
is client ``k`` and its test split is the domain's test split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from runner.data.domains.folders import read_domain_folders
from runner.data.images.common import ArraySplits
from runner.errors import invalid_value

__all__ = ["DomainFolderReader", "stratified_subset"]


def stratified_subset(labels: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of a random ``fraction`` of each class of ``labels`` (at least one per class)."""
    if fraction >= 1.0:
        return np.arange(len(labels))
    chosen = []
    for c in np.unique(labels):
        members = np.flatnonzero(labels == c)
        count = max(1, int(round(fraction * len(members))))
        chosen.append(rng.permutation(members)[:count])
    return np.sort(np.concatenate(chosen))


class DomainFolderReader:
    """Reads ``<root>/<domain>/{train,test}/<class>/*`` for every domain into one
    :class:`ArraySplits` with ``domain_train`` / ``domain_test`` (module docstring).

    Args:
        root: dataset root.
        domains: domain folder names, in client order.
        size: image side after resizing.
        train_fraction: fraction of each domain's training images kept (class-stratified, seeded).
        seed: seed of the subsample.
        train_split / test_split: split folder names.
        dataset_name: for error messages.
    """

    def __init__(
        self,
        root: str,
        domains: list[str],
        size: int = 28,
        train_fraction: float = 1.0,
        seed: int = 0,
        train_split: str = "train",
        test_split: str = "test",
        dataset_name: str = "dataset",
    ) -> None:
        if not 0.0 < float(train_fraction) <= 1.0:
            raise invalid_value("dataset.reader.train_fraction", train_fraction, "a number in (0, 1]")
        if not domains:
            raise invalid_value("dataset.reader.domains", domains, "a non-empty list of domain folders")
        self.root = Path(root)
        self.domains = list(domains)
        self.size = int(size)
        self.train_fraction = float(train_fraction)
        self.seed = int(seed)
        self.train_split = train_split
        self.test_split = test_split
        self.dataset_name = dataset_name

    def _tensors(self, images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
        return (x - 0.5) / 0.5

    def load(self) -> ArraySplits:
        train = read_domain_folders(self.root, self.domains, self.train_split, self.size, self.dataset_name)
        test = read_domain_folders(self.root, self.domains, self.test_split, self.size, self.dataset_name)
        names = train[self.domains[0]].class_names
        for domain in self.domains:
            if test[domain].class_names != names:  # read_domain_folders orders per split
                raise invalid_value(
                    "dataset.root",
                    str(self.root),
                    f"the same class folders in {self.train_split}/ and {self.test_split}/ of every domain",
                )
        rng = np.random.default_rng(self.seed)
        parts: dict[str, list] = {k: [] for k in ("xtr", "ytr", "dtr", "xte", "yte", "dte")}
        for k, domain in enumerate(self.domains):
            keep = stratified_subset(train[domain].labels, self.train_fraction, rng)
            parts["xtr"].append(train[domain].images[keep])
            parts["ytr"].append(train[domain].labels[keep])
            parts["dtr"].append(np.full(len(keep), k, dtype=np.int64))
            parts["xte"].append(test[domain].images)
            parts["yte"].append(test[domain].labels)
            parts["dte"].append(np.full(len(test[domain]), k, dtype=np.int64))
        cat = {k: np.concatenate(v) for k, v in parts.items()}
        return ArraySplits(
            x_train=self._tensors(cat["xtr"]),
            y_train=torch.from_numpy(cat["ytr"]),
            x_test=self._tensors(cat["xte"]),
            y_test=torch.from_numpy(cat["yte"]),
            class_names=list(names),
            domain_train=torch.from_numpy(cat["dtr"]),
            domain_test=torch.from_numpy(cat["dte"]),
            domain_names=list(self.domains),
        )
