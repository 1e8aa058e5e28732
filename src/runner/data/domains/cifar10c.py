"""CIFAR-10-C (Hendrycks & Dietterich, ICLR 2019): corruption functions, reader and twin.

Real format: ``<root>/<corruption>.npy`` — ``uint8 [5·N, 32, 32, 3]``, the N test images at
severity 1, then 2, …, 5 — and ``<root>/labels.npy`` (``[5·N]``). The twin applies the same
corruption functions to the test images of the CIFAR-10 twin (a CIFAR-10 python-pickle folder,
``test_batch``) and writes them in that format, so the reader is exercised unchanged.

The corruptions are re-implementations of the benchmark's definitions with its per-severity
constants (noise, blur, contrast, brightness, JPEG, pixelate); frost/fog/snow/motion blur, which
need external textures or ImageMagick, are not included.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from runner.data.domains.folders import ImageArrays
from runner.data.files import check_labels
from runner.data.images.cifar import CIFAR10_NAMES, load_cifar_pickle
from runner.data.twin import CachedTwin
from runner.errors import UserError, invalid_value, missing_dataset_root

RECIPE_VERSION = 1
SEVERITIES = (1, 2, 3, 4, 5)
CIFAR10_CLASSES = tuple(CIFAR10_NAMES)


def _as_float(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, H, W, 3] → float [N, 3, H, W] in [0, 1]."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0


def _as_uint8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def gaussian_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    sigma = (0.04, 0.06, 0.08, 0.09, 0.10)[severity - 1]
    x = _as_float(images)
    return _as_uint8(x + torch.from_numpy(rng.normal(0, sigma, x.shape).astype(np.float32)))


def shot_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    photons = (500, 250, 100, 75, 50)[severity - 1]
    x = _as_float(images).numpy()
    return _as_uint8(torch.from_numpy((rng.poisson(x * photons) / photons).astype(np.float32)))


def impulse_noise(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    amount = (0.01, 0.02, 0.03, 0.05, 0.07)[severity - 1]
    x = _as_float(images)
    u = torch.from_numpy(rng.random(x.shape, dtype=np.float32))
    x = torch.where(u < amount / 2, torch.zeros_like(x), x)
    x = torch.where(u > 1 - amount / 2, torch.ones_like(x), x)
    return _as_uint8(x)


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(np.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k2 = torch.outer(k, k)
    return k2 / k2.sum()


def _convolve(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    pad = kernel.shape[-1] // 2
    weight = kernel.expand(3, 1, *kernel.shape).contiguous()
    return F.conv2d(F.pad(x, (pad, pad, pad, pad), mode="reflect"), weight, groups=3)


def gaussian_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    sigma = (0.4, 0.6, 0.7, 0.8, 1.0)[severity - 1]
    return _as_uint8(_convolve(_as_float(images), _gaussian_kernel(sigma)))


def defocus_blur(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    radius, alias_sigma = ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1))[severity - 1]
    size = max(3, 2 * int(np.ceil(radius)) + 1)
    t = torch.arange(size, dtype=torch.float32) - size // 2
    disk = ((t[:, None] ** 2 + t[None, :] ** 2) <= max(radius, 0.5) ** 2).float()
    disk = disk / disk.sum()
    blurred = _convolve(_convolve(_as_float(images), disk), _gaussian_kernel(alias_sigma))
    return _as_uint8(blurred)


def contrast(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    factor = (0.75, 0.5, 0.4, 0.3, 0.15)[severity - 1]
    x = _as_float(images)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return _as_uint8((x - mean) * factor + mean)


def brightness(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    shift = (0.05, 0.1, 0.15, 0.2, 0.3)[severity - 1]
    return _as_uint8(_as_float(images) + shift)


def jpeg_compression(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image

    quality = (80, 65, 58, 50, 40)[severity - 1]
    out = np.empty_like(images)
    for i, image in enumerate(images):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
        out[i] = np.asarray(Image.open(buffer).convert("RGB"))
    return out


def pixelate(images: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    factor = (0.95, 0.9, 0.85, 0.75, 0.65)[severity - 1]
    x = _as_float(images)
    h, w = x.shape[-2:]
    small = F.interpolate(x, size=(max(1, int(h * factor)), max(1, int(w * factor))), mode="area")
    return _as_uint8(F.interpolate(small, size=(h, w), mode="nearest"))


CORRUPTIONS: dict[str, Callable[[np.ndarray, int, np.random.Generator], np.ndarray]] = {
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "defocus_blur": defocus_blur,
    "gaussian_blur": gaussian_blur,
    "contrast": contrast,
    "brightness": brightness,
    "jpeg_compression": jpeg_compression,
    "pixelate": pixelate,
}


def read_cifar10c(
    root: str, corruptions: list[str], severities: list[int] | tuple[int, ...] = SEVERITIES
) -> dict[str, ImageArrays]:
    """``{"<corruption>@<severity>": ImageArrays}`` from ``<root>/<corruption>.npy`` + ``labels.npy``."""
    if not os.path.isdir(root):
        raise missing_dataset_root("cifar10c", root)
    bad = [s for s in severities if s not in SEVERITIES]
    if bad:
        raise invalid_value("dataset.severities", bad, "values among 1..5")
    labels_path = os.path.join(root, "labels.npy")
    if not os.path.isfile(labels_path):
        raise UserError(f"CIFAR-10-C labels not found: {labels_path}")
    labels = _load_npy(labels_path).astype(np.int64)
    if labels.ndim != 1:
        raise UserError(f"{labels_path} has shape {labels.shape}; expected one label per image")
    check_labels(labels_path, labels, len(CIFAR10_CLASSES))
    if len(labels) % 5:
        raise UserError(f"{labels_path} has {len(labels)} labels, not a multiple of the 5 severities")
    n = len(labels) // 5
    result = {}
    for name in corruptions:
        path = os.path.join(root, f"{name}.npy")
        if not os.path.isfile(path):
            available = sorted(p[:-4] for p in os.listdir(root) if p.endswith(".npy") and p != "labels.npy")
            raise UserError(f"CIFAR-10-C corruption file {path} not found; available: {', '.join(available)}")
        images = _load_npy(path, mmap_mode="r")
        if images.shape[0] != len(labels) or images.shape[1:] != (32, 32, 3):
            raise UserError(f"{path} has shape {images.shape}; expected ({len(labels)}, 32, 32, 3)")
        for severity in severities:
            rows = slice((severity - 1) * n, severity * n)
            result[f"{name}@{severity}"] = ImageArrays(
                np.asarray(images[rows]), labels[rows], list(CIFAR10_CLASSES)
            )
    return result


def _load_npy(path: str, mmap_mode: str | None = None) -> np.ndarray:
    """``np.load`` of a ``.npy`` (never pickled objects); a broken file is one line naming it."""
    try:
        array = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise UserError(f"{path} is not a readable .npy array ({str(err).splitlines()[0][:120]})") from None
    if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.number):
        raise UserError(f"{path} holds {type(array).__name__} of {getattr(array, 'dtype', '?')}, not numbers")
    return array


def load_cifar_test_batch(cifar_root: str) -> tuple[np.ndarray, np.ndarray]:
    """Images ``uint8 [N, 32, 32, 3]`` and labels of ``<cifar_root>/test_batch`` (CIFAR-10 python format)."""
    path = os.path.join(cifar_root, "test_batch")
    if not os.path.isfile(path):
        raise UserError(f"CIFAR-10 test batch not found: {path} (the cifar-10-batches-py folder)")
    batch = load_cifar_pickle(path)
    data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(data), np.asarray(batch[b"labels"], dtype=np.int64)


class CIFAR10CTwin(CachedTwin):
    """CIFAR-10-C written from a CIFAR-10 python-pickle folder (normally the CIFAR-10 twin).

    Args:
        cifar_root: folder holding ``test_batch``.
        corruptions: names among :data:`CORRUPTIONS`.
        seed: seed of the random corruptions.
    """

    twin_name = "cifar10c"

    def __init__(
        self, cifar_root: str, corruptions: list[str] | tuple[str, ...] = tuple(CORRUPTIONS), seed: int = 0
    ):
        unknown = [c for c in corruptions if c not in CORRUPTIONS]
        if unknown:
            raise invalid_value("dataset.twin.corruptions", unknown, "among " + ", ".join(CORRUPTIONS))
        self.cifar_root = str(cifar_root)
        self.corruptions = list(corruptions)
        self.seed = int(seed)

    def recipe(self) -> dict:
        test_batch = os.path.join(self.cifar_root, "test_batch")
        stamp = os.path.getmtime(test_batch) if os.path.isfile(test_batch) else None
        return {
            "recipe_version": RECIPE_VERSION,
            "cifar_root": os.path.abspath(self.cifar_root),
            "source_mtime": stamp,
            "corruptions": self.corruptions,
            "seed": self.seed,
        }

    def write(self, out: str) -> None:
        images, labels = load_cifar_test_batch(self.cifar_root)
        rng = np.random.default_rng(self.seed)
        for name in self.corruptions:
            stacked = np.concatenate([CORRUPTIONS[name](images, severity, rng) for severity in SEVERITIES])
            np.save(os.path.join(out, f"{name}.npy"), stacked)
        np.save(os.path.join(out, "labels.npy"), np.tile(labels, len(SEVERITIES)))
