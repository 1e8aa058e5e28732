"""Digits-5 twin: scikit-learn's real handwritten digits rendered into five domains.

Digits-5 (MNIST, MNIST-M, SVHN, USPS, SynthDigits; FedPall card) is the feature-drift benchmark of
FedPall: the same ten classes look different in every domain. The twin keeps that structure with
real handwriting: each of scikit-learn's 1,797 8×8 digits (UCI optical digits) is upsampled and
rendered with one domain's style, then written as PNG files in the layout FedPall reads,
``<root>/<domain>/<split>/<class>/<index>.png``:

* ``mnist``  — white strokes on black, centred, ~20 px tall in a 28 px frame;
* ``mnistm`` — strokes cut out of a random colour texture (|texture − 255·digit|, MNIST-M style);
* ``svhn``   — coloured digit on a coloured background, low contrast, fragments of neighbouring
  digits at the left and right edges, blur;
* ``usps``   — thick strokes, digit fills the frame, blocky (rendered at 16 px then upsampled);
* ``syn``    — thin strokes in a random colour over a colour gradient, rotated ±20°.

Every domain draws its own random sample of digits (``per_domain``), with random shifts.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

from runner.data.twin import CachedTwin
from runner.errors import invalid_value

DOMAINS = ("mnist", "mnistm", "svhn", "usps", "syn")
RECIPE_VERSION = 1


def load_sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 1,797 real 8×8 digits of scikit-learn (values 0–1, float32) and their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    return (digits.images / 16.0).astype(np.float32), digits.target.astype(np.int64)


def _resize(img: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of a [H, W] or [C, H, W] tensor to size × size."""
    squeeze = img.ndim == 2
    x = img[None, None] if squeeze else img[None]
    y = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return y[0, 0] if squeeze else y[0]


def _place(glyph: torch.Tensor, canvas: int, offset: tuple[int, int]) -> torch.Tensor:
    """Put a square glyph [g, g] into a zero canvas at (row, col) offset (clipped at the borders)."""
    out = torch.zeros(canvas, canvas)
    g = glyph.shape[0]
    r, c = offset
    r0, c0 = max(r, 0), max(c, 0)
    r1, c1 = min(r + g, canvas), min(c + g, canvas)
    if r1 > r0 and c1 > c0:
        out[r0:r1, c0:c1] = glyph[r0 - r : r1 - r, c0 - c : c1 - c]
    return out


def _smooth_noise(rng: np.random.Generator, size: int, cells: int, channels: int = 3) -> torch.Tensor:
    """Low-frequency colour noise in [0, 1]: random cells upsampled to size × size."""
    coarse = torch.from_numpy(rng.random((channels, cells, cells), dtype=np.float32))
    return _resize(coarse, size).clamp(0, 1)


def _dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    return F.max_pool2d(mask[None, None], 2 * radius + 1, stride=1, padding=radius)[0, 0]


def _rotate(mask: torch.Tensor, degrees: float) -> torch.Tensor:
    theta = torch.tensor(np.deg2rad(degrees), dtype=torch.float32)
    rot = torch.stack(
        [
            torch.stack([theta.cos(), -theta.sin(), torch.zeros(())]),
            torch.stack([theta.sin(), theta.cos(), torch.zeros(())]),
        ]
    )
    grid = F.affine_grid(rot[None], [1, 1, *mask.shape], align_corners=False)
    return F.grid_sample(mask[None, None], grid, align_corners=False)[0, 0]


def render_digit(
    digit: np.ndarray,
    domain: str,
    rng: np.random.Generator,
    size: int = 28,
    neighbours: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """One 8×8 digit (values 0–1) rendered in ``domain``'s style: ``uint8 [size, size, 3]``."""
    d = torch.from_numpy(digit)
    jitter = tuple(int(v) for v in rng.integers(-2, 3, size=2))
    if domain == "mnist":
        g = round(size * 0.72)
        mask = _place(_resize(d, g), size, (size // 2 - g // 2 + jitter[0], size // 2 - g // 2 + jitter[1]))
        rgb = mask.expand(3, -1, -1)
    elif domain == "mnistm":
        g = round(size * 0.72)
        mask = _place(
            _resize(d, g), size, (size // 2 - g // 2 + jitter[0], size // 2 - g // 2 + jitter[1])
        ).clamp(0, 1)
        texture = _smooth_noise(rng, size, cells=int(rng.integers(3, 7)))
        rgb = (texture - mask).abs()
    elif domain == "svhn":
        g = round(size * 0.8)
        mask = _place(_resize(d, g), size, (size // 2 - g // 2 + jitter[0], size // 2 - g // 2 + jitter[1]))
        if neighbours is not None:  # fragments of neighbouring house-number digits at the edges
            left, right = (_resize(torch.from_numpy(n), g) for n in neighbours)
            mask = torch.maximum(mask, _place(left, size, (size // 2 - g // 2, -g + 6)))
            mask = torch.maximum(mask, _place(right, size, (size // 2 - g // 2, size - 6)))
        mask = mask.clamp(0, 1)
        background = torch.from_numpy(rng.random(3, dtype=np.float32))
        ink = (background + 0.35 + 0.3 * torch.from_numpy(rng.random(3, dtype=np.float32))) % 1.0
        rgb = background[:, None, None] * (1 - mask) + ink[:, None, None] * mask
        rgb = 0.25 + 0.5 * rgb  # low contrast
        rgb = F.avg_pool2d(rgb[None], 3, stride=1, padding=1, count_include_pad=False)[0]
    elif domain == "usps":
        small = 16
        mask = _dilate(_resize(d, small - 2).clamp(0, 1), 1)
        mask = _place(mask, small, (1, 1))
        mask = F.interpolate(mask[None, None], size=(size, size), mode="nearest")[0, 0]
        rgb = mask.expand(3, -1, -1)
    elif domain == "syn":
        g = round(size * 0.7)
        mask = _place(_resize(d, g), size, (size // 2 - g // 2 + jitter[0], size // 2 - g // 2 + jitter[1]))
        mask = (_rotate(mask, float(rng.uniform(-20, 20))) > 0.45).float()
        a, b = (torch.from_numpy(rng.random(3, dtype=np.float32)) for _ in range(2))
        ramp = torch.linspace(0, 1, size)[None, :, None]
        background = (a[:, None, None] * (1 - ramp) + b[:, None, None] * ramp).expand(3, size, size)
        ink = torch.from_numpy(rng.random(3, dtype=np.float32))
        rgb = background * (1 - mask) + ink[:, None, None] * mask
    else:
        raise invalid_value("dataset.twin.domains", domain, "among " + ", ".join(DOMAINS))
    noise = torch.from_numpy(rng.normal(0, 0.03, size=(3, size, size)).astype(np.float32))
    rgb = (rgb + noise).clamp(0, 1)
    return (rgb.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


class Digits5Twin(CachedTwin):
    """Writes the Digits-5 twin (module docstring) in ``<root>/<domain>/{train,test}/<class>/*.png``.

    Args:
        domains: which of :data:`DOMAINS` to write (one FL client per domain).
        per_domain: digits drawn per domain, stratified (``per_domain // 10`` of each class); 80 % of
            each class train, 20 % test.
        size: image side in pixels (28 as in FedPall's Digits setting).
        seed: seed of everything random.
    """

    twin_name = "digits5"

    def __init__(
        self,
        domains: list[str] | tuple[str, ...] = DOMAINS,
        per_domain: int = 600,
        size: int = 28,
        seed: int = 0,
    ):
        unknown = [d for d in domains if d not in DOMAINS]
        if unknown:
            raise invalid_value("dataset.twin.domains", unknown, "among " + ", ".join(DOMAINS))
        if not 10 <= int(per_domain) <= 1797:
            raise invalid_value(
                "dataset.twin.per_domain", per_domain, "10..1797 (scikit-learn has 1,797 digits)"
            )
        self.domains = list(domains)
        self.per_domain = int(per_domain)
        self.size = int(size)
        self.seed = int(seed)

    def recipe(self) -> dict:
        return {
            "recipe_version": RECIPE_VERSION,
            "domains": self.domains,
            "per_domain": self.per_domain,
            "size": self.size,
            "seed": self.seed,
        }

    def write(self, out: str) -> None:
        images, labels = load_sklearn_digits()
        rng = np.random.default_rng(self.seed)
        per_class = self.per_domain // 10
        for domain in self.domains:
            # stratified: per_domain // 10 digits of every class, 80 % of each class for training
            for digit in range(10):
                chosen = rng.permutation(np.flatnonzero(labels == digit))[:per_class]
                n_train = max(1, min(len(chosen) - 1, int(round(0.8 * len(chosen)))))
                for rank, index in enumerate(chosen):
                    self._write_one(
                        out, domain, "train" if rank < n_train else "test", index, images, labels, rng
                    )

    def _write_one(
        self,
        out: str,
        domain: str,
        split: str,
        index: int,
        images: np.ndarray,
        labels: np.ndarray,
        rng: np.random.Generator,
    ) -> None:
        """Render digit ``index`` in ``domain`` and save it as ``<domain>/<split>/<label>/<index>.png``."""
        from PIL import Image

        neighbours = tuple(images[rng.integers(len(labels))] for _ in range(2))
        pixels = render_digit(images[index], domain, rng, self.size, neighbours)
        folder = os.path.join(out, domain, split, str(int(labels[index])))
        os.makedirs(folder, exist_ok=True)
        Image.fromarray(pixels).save(os.path.join(folder, f"{index:05d}.png"))
