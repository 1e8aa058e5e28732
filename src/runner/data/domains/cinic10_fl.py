"""CINIC-10 (and Mini-ImageNet) as federated datasets: folder / split-file readers → ArraySplits
(CO-PFL card's datasets).

* :class:`Cinic10Reader` — CINIC-10 (Darlow et al. 2018), ``<root>/{train,valid,test}/<class>/*.png``
  (32 × 32, 90,000 images per split) via :func:`~runner.data.domains.folders.read_class_folders`;
  ``train_splits`` are pooled for training (default ``train`` + ``valid``, as FL papers do), ``test``
  is the global test split; normalised with CINIC-10's channel statistics. The twin is
  :class:`~runner.data.domains.styled_objects.StyledObjectsTwin` with ``layout=cinic10``.
* :class:`MiniImageNetReader` — the object interface (``load() -> ArraySplits``) over
  :func:`~runner.data.domains.mini_imagenet.read_mini_imagenet` (all 100 classes pooled, a seeded
  per-class ``test_fraction`` held out), normalised with the ImageNet statistics; the twin is
  ``StyledObjectsTwin(layout=mini_imagenet)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from runner.data.domains.folders import ImageArrays, read_class_folders
from runner.data.domains.mini_imagenet import read_mini_imagenet
from runner.data.images.common import ArraySplits
from runner.errors import invalid_value, missing_dataset_root

__all__ = ["CINIC10_MEAN", "CINIC10_STD", "Cinic10Reader", "MiniImageNetReader", "normalised"]

CINIC10_MEAN = (0.47889522, 0.47227842, 0.43047404)
CINIC10_STD = (0.24205776, 0.23828046, 0.25874835)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalised(images: np.ndarray, mean, std) -> torch.Tensor:
    """uint8 ``[N, H, W, 3]`` → float ``[N, 3, H, W]``, ``(x/255 − mean) / std`` per channel."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def _splits(train: ImageArrays, test: ImageArrays, mean, std) -> ArraySplits:
    return ArraySplits(
        x_train=normalised(train.images, mean, std),
        y_train=torch.from_numpy(train.labels),
        x_test=normalised(test.images, mean, std),
        y_test=torch.from_numpy(test.labels),
        class_names=list(train.class_names),
    )


class Cinic10Reader:
    """CINIC-10 class folders → :class:`ArraySplits` (module docstring).

    Args:
        root: the folder holding ``train/``, ``valid/``, ``test/``.
        train_splits: split folders pooled into the training set.
        test_split: the test split folder.
        size: image side (CINIC-10 is 32 px).
    """

    def __init__(
        self,
        root: str,
        train_splits: list[str] | tuple[str, ...] = ("train", "valid"),
        test_split: str = "test",
        size: int = 32,
    ) -> None:
        if not train_splits:
            raise invalid_value(
                "dataset.reader.train_splits", train_splits, "a non-empty list of split folders"
            )
        self.root = Path(root)
        self.train_splits = list(train_splits)
        self.test_split = test_split
        self.size = int(size)

    def load(self) -> ArraySplits:
        if not self.root.is_dir():
            raise missing_dataset_root("cinic10", str(self.root))
        test = read_class_folders(self.root / self.test_split, self.size)
        parts = [
            read_class_folders(self.root / split, self.size, test.class_names) for split in self.train_splits
        ]
        train = ImageArrays(
            np.concatenate([p.images for p in parts]),
            np.concatenate([p.labels for p in parts]),
            test.class_names,
        )
        return _splits(train, test, CINIC10_MEAN, CINIC10_STD)


class MiniImageNetReader:
    """Mini-ImageNet (``images/`` + ``train.csv`` / ``val.csv`` / ``test.csv``) → :class:`ArraySplits`.

    Args:
        root: dataset root; size: image side (84 in the few-shot literature; CO-PFL-sized CNNs use 32).
        test_fraction: per-class hold-out for the global test set; seed: its seed.
    """

    def __init__(self, root: str, size: int = 84, test_fraction: float = 0.2, seed: int = 0) -> None:
        if not 0.0 < float(test_fraction) < 1.0:
            raise invalid_value("dataset.reader.test_fraction", test_fraction, "a number in (0, 1)")
        self.root = str(root)
        self.size = int(size)
        self.test_fraction = float(test_fraction)
        self.seed = int(seed)

    def load(self) -> ArraySplits:
        data = read_mini_imagenet(self.root, self.size, self.test_fraction, self.seed)
        return _splits(data["train"], data["test"], IMAGENET_MEAN, IMAGENET_STD)
