"""MNIST in its idx format, and a twin written in that format from scikit-learn's real digits.

Files (LeCun et al.): ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each optionally gzipped (``.gz``), in the root
or in ``<root>/MNIST/raw`` (torchvision's layout). idx: big-endian magic ``0x0803`` (images, then
count, rows, cols) / ``0x0801`` (labels, then count), then uint8 data.

:class:`MNISTDigitsTwin`: scikit-learn's 1,797 real 8×8 handwritten digits (UCI, values 0–16),
split by source image into train / test sources, upsampled to 20×20 and centred in 28×28 like MNIST,
with random affine jitter (rotation, scale, shift) and light noise to reach the requested sizes.
"""

from __future__ import annotations

import gzip
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F

from runner.data.files import check_labels, read_bytes
from runner.errors import UserError, missing_dataset_root

from .common import ArraySplits, CachedTwin

__all__ = ["MNISTDigitsTwin", "MNISTReader", "read_idx", "write_idx"]

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
NUM_CLASSES = 10


def name_variants(name: str) -> tuple[str, ...]:
    """The file name as LeCun ships it and with the dot some mirrors use (``train-images.idx3-ubyte``)."""
    return (name, name.replace("-idx", ".idx"))


MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def read_idx(path: str) -> np.ndarray:
    """An idx file (plain or gzipped) as a uint8 array; UserError naming the file if malformed
    (a corrupted ``.gz`` included)."""
    data = read_bytes(path)
    if len(data) < 8:
        raise UserError(f"{path} is not an idx file (too short)")
    zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or dtype_code != 0x08 or ndim not in (1, 3) or len(data) < 4 + 4 * ndim:
        raise UserError(f"{path} is not a uint8 idx file (header {data[:4].hex()})")
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise UserError(f"{path}: header says {dims} but holds {body.size} bytes of data (truncated?)")
    return body.reshape(dims)


def write_idx(path: str, array: np.ndarray) -> None:
    """Write a uint8 array of 1 or 3 dimensions as an idx file (gzipped if ``path`` ends in .gz)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as fh:
        fh.write(header + array.tobytes())


class MNISTReader:
    """Loads the four idx files; images normalised with MNIST's mean/std to ``float32 [N, 1, 28, 28]``."""

    def __init__(self, root: str) -> None:
        self.root = str(root)
        candidates = [self.root, os.path.join(self.root, "MNIST", "raw")]
        self.folder = next((c for c in candidates if self._find(c, FILES["train_images"])), None)
        if self.folder is None:
            raise missing_dataset_root("mnist", os.path.join(self.root, FILES["train_images"] + "[.gz]"))

    @staticmethod
    def _find(folder: str, name: str) -> str | None:
        for variant in name_variants(name):
            for candidate in (os.path.join(folder, variant), os.path.join(folder, variant + ".gz")):
                if os.path.isfile(candidate):
                    return candidate
        return None

    def _read(self, key: str) -> np.ndarray:
        path = self._find(self.folder, FILES[key])
        if path is None:
            raise UserError(f"mnist: {FILES[key]}[.gz] missing in {self.folder}")
        return read_idx(path)

    def load(self) -> ArraySplits:
        def images(a: np.ndarray) -> torch.Tensor:
            x = torch.from_numpy(a.astype(np.float32) / 255.0).unsqueeze(1)
            return (x - MNIST_MEAN) / MNIST_STD

        xtr, ytr = self._read("train_images"), self._read("train_labels")
        xte, yte = self._read("test_images"), self._read("test_labels")
        for x, y, split in ((xtr, ytr, "train"), (xte, yte, "test")):
            images_file = self._find(self.folder, FILES[f"{split}_images"])
            labels_file = self._find(self.folder, FILES[f"{split}_labels"])
            if x.ndim != 3:
                raise UserError(f"{images_file}: holds labels, not images (idx with {x.ndim} dimension)")
            if y.ndim != 1:
                raise UserError(f"{labels_file}: holds images, not labels (idx with {y.ndim} dimensions)")
            if len(x) != len(y):
                raise UserError(
                    f"mnist {split}: {images_file} has {len(x)} images but {labels_file} {len(y)} labels"
                )
            if len(y) == 0:
                raise UserError(f"{labels_file}: no {split} samples")
            check_labels(labels_file, y, NUM_CLASSES)
        return ArraySplits(
            images(xtr),
            torch.from_numpy(ytr.astype(np.int64)),
            images(xte),
            torch.from_numpy(yte.astype(np.int64)),
            [str(d) for d in range(10)],
        )


class MNISTDigitsTwin(CachedTwin):
    """MNIST-format twin from scikit-learn's real 8×8 digits (see the module docstring)."""

    def __init__(
        self,
        train_size: int = 6000,
        test_size: int = 1000,
        test_source_fraction: float = 0.25,
        max_rotation_deg: float = 12.0,
        noise: float = 12.0,
        gzip_files: bool = False,
        seed: int = 0,
    ) -> None:
        self.train_size = int(train_size)
        self.test_size = int(test_size)
        self.test_source_fraction = float(test_source_fraction)
        self.max_rotation_deg = float(max_rotation_deg)
        self.noise = float(noise)
        self.gzip_files = bool(gzip_files)
        self.seed = int(seed)

    def recipe(self) -> dict:
        return dict(vars(self))

    @staticmethod
    def _source_digits() -> tuple[np.ndarray, np.ndarray]:
        from sklearn.datasets import load_digits

        digits = load_digits()
        return digits.images.astype(np.float32) / 16.0, digits.target.astype(np.int64)

    def _render(self, images: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
        pick = rng.integers(0, len(images), size=count)
        src = torch.from_numpy(images[pick]).unsqueeze(1)  # [N,1,8,8] in [0,1]
        up = F.interpolate(src, size=(20, 20), mode="bilinear", align_corners=False)
        canvas = F.pad(up, (4, 4, 4, 4))  # 28x28, digit in the central 20x20 box like MNIST
        angle = np.deg2rad(rng.uniform(-self.max_rotation_deg, self.max_rotation_deg, count))
        scale = rng.uniform(0.9, 1.1, count)
        shift = rng.uniform(-2.0, 2.0, (count, 2)) / 14.0
        cos, sin = np.cos(angle) / scale, np.sin(angle) / scale
        theta = np.stack([np.stack([cos, -sin, shift[:, 0]], 1), np.stack([sin, cos, shift[:, 1]], 1)], 1)
        grid = F.affine_grid(
            torch.from_numpy(theta.astype(np.float32)), list(canvas.shape), align_corners=False
        )
        warped = F.grid_sample(canvas, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        # sharpen strokes toward MNIST's mostly-saturated ink, then add sensor noise
        ink = torch.clamp(warped * 1.6, 0, 1).squeeze(1).numpy() * 255.0
        ink += rng.normal(0, self.noise, ink.shape) * (ink > 8)
        return np.clip(ink, 0, 255).astype(np.uint8), pick

    def write(self, out: str) -> None:
        rng = np.random.default_rng(self.seed)
        images, labels = self._source_digits()
        order = rng.permutation(len(images))
        n_test = int(round(len(images) * self.test_source_fraction))
        test_src, train_src = order[:n_test], order[n_test:]
        suffix = ".gz" if self.gzip_files else ""
        for split, src, count in (("train", train_src, self.train_size), ("t10k", test_src, self.test_size)):
            pixels, pick = self._render(images[src], count, rng)
            write_idx(os.path.join(out, f"{split}-images-idx3-ubyte{suffix}"), pixels)
            write_idx(
                os.path.join(out, f"{split}-labels-idx1-ubyte{suffix}"), labels[src][pick].astype(np.uint8)
            )
