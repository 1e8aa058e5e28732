"""CIFAR-10 / CIFAR-100 in the "python version" pickle format, and a procedural twin in that format.

CIFAR-10 (``cifar-10-batches-py/``): ``data_batch_1`` … ``data_batch_5``, ``test_batch`` (pickled
dicts with ``b"data"`` uint8 ``[N, 3072]`` channel-major rows and ``b"labels"``), ``batches.meta``
(``b"label_names"``). CIFAR-100 (``cifar-100-python/``): ``train``, ``test`` (``b"fine_labels"``,
``b"coarse_labels"``), ``meta`` (``b"fine_label_names"``, ``b"coarse_label_names"``). The root may be
that folder or its parent.

:class:`ProceduralCifarTwin` draws 32×32 images whose class fixes a colour family, a shape and a
stripe texture (each varied per image: position, size, rotation, hue jitter, a textured background
and noise), under the real class names. CIFAR-100 classes combine 10 colour families with 10
shapes/textures; classes of one coarse group share the shape, so near classes look alike.
``colour_swap`` (0 by default) gives that fraction of the images a random class's colour family, so
that colour is only a weak cue and the shape must be learned (the class colour alone makes the 10-class
twin nearly separable from a few images: issue 16).
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import torch

from runner.data.files import check_labels
from runner.data.safe_pickle import load_restricted_pickle
from runner.errors import UserError, invalid_value, missing_dataset_root

from .common import ArraySplits, CachedTwin

__all__ = ["CIFAR10_NAMES", "CifarReader", "ProceduralCifarTwin", "object_mask"]

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR_STD = (0.2470, 0.2435, 0.2616)
LAYOUTS = {
    "cifar10": {
        "folder": "cifar-10-batches-py",
        "train": [f"data_batch_{i}" for i in range(1, 6)],
        "test": ["test_batch"],
        "meta": "batches.meta",
        "labels": b"labels",
        "names": b"label_names",
    },
    "cifar100": {
        "folder": "cifar-100-python",
        "train": ["train"],
        "test": ["test"],
        "meta": "meta",
        "labels": b"fine_labels",
        "names": b"fine_label_names",
    },
}


def load_cifar_pickle(path: str) -> dict:
    """One pickled CIFAR batch (keys are bytes), read with the restricted unpickler.

    A broken file, or one that names any global beyond NumPy's array reconstruction (a pickle that
    would run code), is a UserError naming it.
    """
    batch = load_restricted_pickle(path, format_name="CIFAR python pickle", encoding="bytes")
    if not isinstance(batch, dict):
        raise UserError(f"{path} is not a CIFAR python pickle (holds a {type(batch).__name__}, not a dict)")
    return batch


class CifarReader:
    """Loads CIFAR-10 or CIFAR-100 (``variant``) to normalised ``float32 [N, 3, 32, 32]``."""

    def __init__(self, root: str, variant: str = "cifar10") -> None:
        if variant not in LAYOUTS:
            raise invalid_value("dataset.reader.variant", variant, "one of cifar10, cifar100")
        self.variant = variant
        self.layout = LAYOUTS[variant]
        root = str(root)
        nested = os.path.join(root, self.layout["folder"])
        self.folder = nested if os.path.isdir(nested) else root
        if not os.path.isfile(os.path.join(self.folder, self.layout["meta"])):
            raise missing_dataset_root(variant, os.path.join(nested, self.layout["meta"]))

    def _split(self, names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for name in names:
            path = os.path.join(self.folder, name)
            if not os.path.isfile(path):
                raise UserError(f"{self.variant}: {path} missing")
            batch = load_cifar_pickle(path)
            for key in (b"data", self.layout["labels"]):
                if key not in batch:
                    raise UserError(
                        f"{path}: no {key!r} entry (holds {sorted(map(repr, batch))[:6]}); not a {self.variant} batch"
                    )
            try:
                data = np.asarray(batch[b"data"], dtype=np.uint8)
                labels = np.asarray(batch[self.layout["labels"]], dtype=np.int64)
            except (TypeError, ValueError, OverflowError) as err:
                raise UserError(f"{path}: data or labels are not numbers ({err})") from None
            if data.ndim != 2 or data.shape[1] != 3072 or labels.ndim != 1 or len(data) != len(labels):
                raise UserError(
                    f"{path}: expected [N, 3072] data and N labels, got {data.shape}, {labels.shape}"
                )
            check_labels(path, labels, self.num_classes)
            xs.append(data)
            ys.append(labels)
        x = torch.from_numpy(np.concatenate(xs)).view(-1, 3, 32, 32).float() / 255.0
        mean = torch.tensor(CIFAR_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
        return (x - mean) / std, torch.from_numpy(np.concatenate(ys))

    @property
    def num_classes(self) -> int:
        return 10 if self.variant == "cifar10" else 100

    def load(self) -> ArraySplits:
        meta_path = os.path.join(self.folder, self.layout["meta"])
        meta = load_cifar_pickle(meta_path)
        raw_names = meta.get(self.layout["names"])
        if not isinstance(raw_names, list | tuple) or len(raw_names) != self.num_classes:
            raise UserError(
                f"{meta_path}: no list of {self.num_classes} {self.layout['names']!r}; not {self.variant} meta"
            )
        names = [n.decode(errors="replace") if isinstance(n, bytes) else str(n) for n in raw_names]
        x_train, y_train = self._split(self.layout["train"])
        x_test, y_test = self._split(self.layout["test"])
        return ArraySplits(x_train, y_train, x_test, y_test, names)


def _class_names(variant: str) -> list[str]:
    if variant == "cifar10":
        return list(CIFAR10_NAMES)
    # CIFAR-100's fine names are not shipped anywhere offline: numbered names grouped 5 per coarse class
    return [f"class_{c:02d}" for c in range(100)]


HUES = np.array(
    [
        [220, 60, 50],
        [50, 170, 70],
        [60, 90, 225],
        [230, 200, 40],
        [200, 60, 210],
        [40, 200, 210],
        [240, 130, 40],
        [120, 80, 40],
        [150, 150, 150],
        [250, 160, 190],
    ],
    dtype=np.float32,
)


def object_mask(kind: int, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-mask of shape ``kind`` (0 disc, 1 square, 2 triangle, 3 cross, 4 ring) in object
    coordinates ``(u, v)`` (unit radius)."""
    if kind == 0:
        mask = u * u + v * v <= 1
    elif kind == 1:
        mask = np.maximum(abs(u), abs(v)) <= 0.8
    elif kind == 2:
        mask = (v <= 0.6) & (v >= -0.95 + 1.8 * abs(u))
    elif kind == 3:
        mask = (abs(u) <= 0.3) | (abs(v) <= 0.3)
    else:
        mask = (u * u + v * v <= 1) & (u * u + v * v >= 0.35)
    return mask & (np.maximum(abs(u), abs(v)) <= 1.0)


class ProceduralCifarTwin(CachedTwin):
    """CIFAR-format twin (see the module docstring)."""

    def __init__(
        self,
        variant: str = "cifar10",
        train_per_class: int = 200,
        test_per_class: int = 50,
        noise: float = 20.0,
        seed: int = 0,
        colour_swap: float = 0.0,
    ) -> None:
        if variant not in LAYOUTS:
            raise invalid_value("dataset.twin.variant", variant, "one of cifar10, cifar100")
        self.variant = variant
        self.train_per_class = int(train_per_class)
        self.test_per_class = int(test_per_class)
        self.noise = float(noise)
        self.seed = int(seed)
        if not 0.0 <= float(colour_swap) <= 1.0:
            raise invalid_value("dataset.twin.colour_swap", colour_swap, "a number in [0, 1]")
        self.colour_swap = float(colour_swap)

    def recipe(self) -> dict:
        recipe = dict(vars(self))
        if not self.colour_swap:  # the recipe (and cache key) of the twins written before the knob
            del recipe["colour_swap"]
        return recipe

    @property
    def num_classes(self) -> int:
        return 10 if self.variant == "cifar10" else 100

    def _style(self, c: int) -> tuple[int, int]:
        """(colour family, shape/texture id) of class ``c``."""
        if self.num_classes == 10:
            return c, (c * 3) % 10
        return c % 10, c // 10

    def render(self, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``uint8 [N, 3072]`` rows (channel-major) for ``labels``."""
        n = len(labels)
        yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)
        out = np.empty((n, 3, 32, 32), dtype=np.uint8)
        for i, c in enumerate(labels):
            hue, shape = self._style(int(c))
            if self.colour_swap and rng.random() < self.colour_swap:
                hue = self._style(int(rng.integers(self.num_classes)))[0]
            bg = rng.uniform(60, 160, 3).astype(np.float32)[:, None, None]
            coarse = np.kron(rng.uniform(-25, 25, (1, 5, 5)), np.ones((1, 7, 7)))[:, :32, :32]
            img = np.broadcast_to(bg, (3, 32, 32)) + coarse
            cx, cy = rng.uniform(10, 22, 2)
            radius = rng.uniform(6, 10)
            theta = rng.uniform(0, np.pi)
            u = ((xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)) / radius
            v = (-(xx - cx) * np.sin(theta) + (yy - cy) * np.cos(theta)) / radius
            mask = object_mask(shape % 5, u, v)
            freq = 1.5 + (shape // 5) * 2.0
            stripes = (np.sin((u + 0.5 * v) * freq * np.pi) > 0).astype(np.float32)
            colour = np.clip(HUES[hue] + rng.normal(0, 15, 3), 0, 255)[:, None, None]
            shaded = colour * (0.6 + 0.4 * stripes)[None]
            img = np.where(mask[None], shaded, img) + rng.normal(0, self.noise, (3, 32, 32))
            out[i] = np.clip(img, 0, 255).astype(np.uint8)
        return out.reshape(n, 3072)

    def write(self, out: str) -> None:
        rng = np.random.default_rng(self.seed)
        layout = LAYOUTS[self.variant]
        folder = os.path.join(out, layout["folder"])
        os.makedirs(folder)
        names = _class_names(self.variant)
        train_labels = rng.permutation(np.repeat(np.arange(self.num_classes), self.train_per_class))
        test_labels = rng.permutation(np.repeat(np.arange(self.num_classes), self.test_per_class))
        train_files = layout["train"]
        chunks = np.array_split(np.arange(len(train_labels)), len(train_files))
        splits = [(name, train_labels[idx]) for name, idx in zip(train_files, chunks, strict=True)]
        splits.append((layout["test"][0], test_labels))
        for name, labels in splits:
            batch = {b"batch_label": name.encode(), b"data": self.render(labels, rng)}
            if self.variant == "cifar10":
                batch[b"labels"] = labels.tolist()
            else:
                batch[b"fine_labels"] = labels.tolist()
                batch[b"coarse_labels"] = (labels // 5).tolist()
            batch[b"filenames"] = [f"{name}_{i:05d}.png".encode() for i in range(len(labels))]
            with open(os.path.join(folder, name), "wb") as fh:
                pickle.dump(batch, fh, protocol=2)
        meta = {layout["names"]: [n.encode() for n in names]}
        if self.variant == "cifar100":
            meta[b"coarse_label_names"] = [f"group_{g:02d}".encode() for g in range(20)]
        else:
            meta[b"num_cases_per_batch"] = len(chunks[0])
        with open(os.path.join(folder, layout["meta"]), "wb") as fh:
            pickle.dump(meta, fh, protocol=2)
