"""Procedural object classes drawn in several visual styles: the twin of the multi-domain image
benchmarks (PACS, Office-Caltech-10) and of CINIC-10 / Mini-ImageNet.

A class is a fixed, seeded composition of 2–4 primitive parts (ellipses, boxes, triangles) with a
colour palette; an instance jitters scale, rotation, position and part sizes. A *style* decides
how the same object looks, which is where the domains drift:

* ``photo``    — textured colour fill on a smooth natural-looking background;
* ``art``      — posterised, blurred, warm-shifted paint strokes (PACS "art_painting");
* ``cartoon``  — flat saturated fill with thick black outlines on a plain background;
* ``sketch``   — black outline only on white (PACS "sketch");
* ``product``  — photo fill on a white background, centred (Office "amazon");
* ``clutter``  — photo fill among random distractor parts (Office "caltech");
* ``webcam``   — low resolution, blur, noise and a colour cast (Office "webcam").

Layouts written (the real readers load them): ``domains`` — ``<root>/<domain>/<split>/<class>/*.png``
(PACS / Office-Caltech-10, FedPall's reader layout); ``cinic10`` — ``<root>/{train,valid,test}/<class>/*.png``;
``mini_imagenet`` — ``<root>/images/*.jpg`` + ``train.csv`` / ``val.csv`` / ``test.csv`` (``filename,label``).
"""

from __future__ import annotations

import csv
import os

import numpy as np
import torch
import torch.nn.functional as F

from runner.data.images.cifar import CIFAR10_NAMES
from runner.data.twin import CachedTwin
from runner.errors import invalid_value

RECIPE_VERSION = 1
STYLES = ("photo", "art", "cartoon", "sketch", "product", "clutter", "webcam")
PACS_DOMAINS = {"photo": "photo", "art_painting": "art", "cartoon": "cartoon", "sketch": "sketch"}
OFFICE_DOMAINS = {"amazon": "product", "caltech": "clutter", "dslr": "photo", "webcam": "webcam"}
PACS_CLASSES = ("dog", "elephant", "giraffe", "guitar", "horse", "house", "person")
OFFICE_CLASSES = (
    "back_pack",
    "bike",
    "calculator",
    "headphones",
    "keyboard",
    "laptop_computer",
    "monitor",
    "mouse",
    "mug",
    "projector",
)
CIFAR10_CLASSES = tuple(CIFAR10_NAMES)
LAYOUTS = ("domains", "cinic10", "mini_imagenet")


def _class_template(class_index: int, seed: int) -> list[dict]:
    """The parts of one class: kind, centre, half-sizes, angle and colour (seeded by the class)."""
    rng = np.random.default_rng([seed, class_index, 7919])
    parts = []
    for _ in range(int(rng.integers(2, 5))):
        parts.append(
            {
                "kind": str(rng.choice(["ellipse", "box", "triangle"])),
                "centre": rng.uniform(-0.3, 0.3, size=2),
                "half": rng.uniform(0.22, 0.55, size=2),
                "angle": float(rng.uniform(0, np.pi)),
                "colour": rng.uniform(0.1, 0.95, size=3),
            }
        )
    return parts


def _part_mask(
    part: dict, xs: torch.Tensor, ys: torch.Tensor, scale: float, shift: np.ndarray, rotation: float
) -> torch.Tensor:
    angle = part["angle"] + rotation
    cx, cy = (part["centre"] * scale + shift).tolist()
    hx, hy = (part["half"] * scale).tolist()
    u = (xs - cx) * np.cos(angle) + (ys - cy) * np.sin(angle)
    v = -(xs - cx) * np.sin(angle) + (ys - cy) * np.cos(angle)
    if part["kind"] == "ellipse":
        return ((u / hx) ** 2 + (v / hy) ** 2 <= 1).float()
    if part["kind"] == "box":
        return ((u.abs() <= hx) & (v.abs() <= hy)).float()
    return ((v >= -hy) & (v <= hy) & (u.abs() <= hx * (hy - v) / (2 * hy))).float()  # triangle, apex up


def _blur(img: torch.Tensor, k: int) -> torch.Tensor:
    return F.avg_pool2d(img[None], k, stride=1, padding=k // 2, count_include_pad=False)[0]


def _smooth(rng: np.random.Generator, size: int, cells: int) -> torch.Tensor:
    coarse = torch.from_numpy(rng.random((3, cells, cells), dtype=np.float32))
    return F.interpolate(coarse[None], size=(size, size), mode="bilinear", align_corners=False)[0]


def render_object(
    class_index: int, style: str, rng: np.random.Generator, size: int = 64, seed: int = 0
) -> np.ndarray:
    """One instance of class ``class_index`` in ``style``: ``uint8 [size, size, 3]``."""
    if style not in STYLES:
        raise invalid_value("dataset.twin.style", style, "one of " + ", ".join(STYLES))
    coords = torch.linspace(-1, 1, size)
    ys, xs = torch.meshgrid(coords, coords, indexing="ij")
    scale = float(rng.uniform(0.8, 1.1)) * (0.8 if style == "clutter" else 1.0)
    shift = rng.uniform(-0.12, 0.12, size=2) * (0.3 if style == "product" else 1.0)
    rotation = float(rng.uniform(-0.3, 0.3))
    parts = _class_template(class_index, seed)
    masks = [_part_mask(p, xs, ys, scale * float(rng.uniform(0.9, 1.1)), shift, rotation) for p in parts]
    colours = [
        torch.from_numpy(np.clip(p["colour"] + rng.normal(0, 0.06, 3), 0, 1).astype(np.float32))
        for p in parts
    ]

    if style in ("sketch", "cartoon"):
        background = (
            torch.ones(3, size, size)
            if style == "sketch"
            else torch.from_numpy(rng.uniform(0.6, 1.0, 3).astype(np.float32))[:, None, None]
            .expand(3, size, size)
            .clone()
        )
    elif style == "product":
        background = torch.ones(3, size, size) * 0.97
    else:
        background = 0.25 + 0.5 * _smooth(rng, size, int(rng.integers(2, 6)))
    img = background.clone()
    if style == "clutter":  # distractor parts of random other shapes
        for _ in range(3):
            fake = {
                "kind": str(rng.choice(["ellipse", "box", "triangle"])),
                "centre": rng.uniform(-0.9, 0.9, 2),
                "half": rng.uniform(0.05, 0.15, 2),
                "angle": float(rng.uniform(0, np.pi)),
                "colour": rng.uniform(0, 1, 3),
            }
            m = _part_mask(fake, xs, ys, 1.0, np.zeros(2), 0.0)
            img = img * (1 - m) + torch.from_numpy(fake["colour"].astype(np.float32))[:, None, None] * m

    outline_width = max(1, size // 32)
    for mask, colour in zip(masks, colours, strict=True):
        eroded = -F.max_pool2d(-mask[None, None], 2 * outline_width + 1, stride=1, padding=outline_width)[
            0, 0
        ]
        outline = (mask - eroded).clamp(0, 1)
        if style == "sketch":
            img = img * (1 - outline)
            continue
        fill = colour[:, None, None].expand(3, size, size)
        if style in ("photo", "product", "clutter", "webcam"):
            fill = (fill * (0.75 + 0.5 * _smooth(rng, size, 8))).clamp(0, 1)
        elif style == "cartoon":
            fill = (fill * 1.3).clamp(0, 1)
        img = img * (1 - mask) + fill * mask
        if style == "cartoon":
            img = img * (1 - outline)

    if style == "art":
        img = (img * 4).round() / 4  # posterise
        img = _blur(img, 5) * torch.tensor([1.1, 1.0, 0.8])[:, None, None]
    elif style == "webcam":
        low = F.interpolate(img[None], size=(size // 3, size // 3), mode="bilinear", align_corners=False)
        img = F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)[0]
        img = img * torch.tensor([0.9, 1.05, 1.2])[:, None, None]
    noise = 0.08 if style == "webcam" else 0.02
    img = (img + torch.from_numpy(rng.normal(0, noise, (3, size, size)).astype(np.float32))).clamp(0, 1)
    return (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


class StyledObjectsTwin(CachedTwin):
    """Writes procedural object classes (module docstring) in one of :data:`LAYOUTS`.

    Args:
        layout: ``domains`` | ``cinic10`` | ``mini_imagenet``.
        class_names: the class folder names (``mini_imagenet``: wnid-like labels).
        domains: ``{domain folder: style}`` for ``domains`` (e.g. :data:`PACS_DOMAINS`); ignored otherwise.
        per_class: images per class (per domain), split 70 / 30 (``cinic10``: 60 / 20 / 20, ``mini_imagenet``: 60 / 20 / 20).
        size: image side in pixels.
        seed: seed of the class templates and of every instance.
    """

    def __init__(
        self,
        layout: str,
        class_names: list[str] | tuple[str, ...],
        domains: dict[str, str] | None = None,
        per_class: int = 30,
        size: int = 64,
        seed: int = 0,
    ):
        if layout not in LAYOUTS:
            raise invalid_value("dataset.twin.layout", layout, "one of " + ", ".join(LAYOUTS))
        if int(per_class) < 5:
            raise invalid_value("dataset.twin.per_class", per_class, "an integer >= 5")
        self.layout = layout
        self.class_names = list(class_names)
        self.domains = dict(domains or {})
        bad = {d: s for d, s in self.domains.items() if s not in STYLES}
        if bad:
            raise invalid_value("dataset.twin.domains", bad, "styles among " + ", ".join(STYLES))
        self.per_class = int(per_class)
        self.size = int(size)
        self.seed = int(seed)

    @property
    def twin_name(self) -> str:
        return self.layout

    def recipe(self) -> dict:
        return {
            "recipe_version": RECIPE_VERSION,
            "layout": self.layout,
            "class_names": self.class_names,
            "domains": self.domains,
            "per_class": self.per_class,
            "size": self.size,
            "seed": self.seed,
        }

    def _splits(
        self, rng: np.random.Generator, names: tuple[str, ...], fractions: tuple[float, ...]
    ) -> list[str]:
        """A shuffled split name per image of one class."""
        counts = [int(round(f * self.per_class)) for f in fractions[:-1]]
        counts.append(self.per_class - sum(counts))
        labels = [name for name, count in zip(names, counts, strict=True) for _ in range(count)]
        return [labels[i] for i in rng.permutation(len(labels))]

    def write(self, out: str) -> None:
        from PIL import Image

        rng = np.random.default_rng(self.seed)
        if self.layout == "domains":
            for domain, style in self.domains.items():
                for k, name in enumerate(self.class_names):
                    for i, split in enumerate(self._splits(rng, ("train", "test"), (0.7, 0.3))):
                        folder = os.path.join(out, domain, split, name)
                        os.makedirs(folder, exist_ok=True)
                        Image.fromarray(render_object(k, style, rng, self.size, self.seed)).save(
                            os.path.join(folder, f"{name}_{i:04d}.png")
                        )
        elif self.layout == "cinic10":
            for k, name in enumerate(self.class_names):
                for i, split in enumerate(self._splits(rng, ("train", "valid", "test"), (0.6, 0.2, 0.2))):
                    folder = os.path.join(out, split, name)
                    os.makedirs(folder, exist_ok=True)
                    style = (
                        "photo" if rng.random() < 0.7 else "clutter"
                    )  # CINIC mixes CIFAR and ImageNet looks
                    Image.fromarray(render_object(k, style, rng, self.size, self.seed)).save(
                        os.path.join(folder, f"{name}_{i:04d}.png")
                    )
        else:  # mini_imagenet: images/ + csv split files (filename,label)
            os.makedirs(os.path.join(out, "images"))
            rows: dict[str, list[tuple[str, str]]] = {"train": [], "val": [], "test": []}
            for k, name in enumerate(self.class_names):
                for i, split in enumerate(self._splits(rng, ("train", "val", "test"), (0.6, 0.2, 0.2))):
                    filename = f"{name}{i:08d}.jpg"
                    Image.fromarray(render_object(k, "photo", rng, self.size, self.seed)).save(
                        os.path.join(out, "images", filename), quality=95
                    )
                    rows[split].append((filename, name))
            for split, entries in rows.items():
                with open(os.path.join(out, f"{split}.csv"), "w", newline="") as fh:
                    writer = csv.writer(fh)
                    writer.writerow(["filename", "label"])
                    writer.writerows(entries)


def mini_imagenet_wnids(count: int = 100) -> list[str]:
    """Class labels for the Mini-ImageNet twin, shaped like ImageNet wnids (``n99xxxxxx``: not real ones)."""
    return [f"n99{index:06d}" for index in range(count)]
