"""Procedural object classes drawn in several visual styles: the twin of the multi-domain image
benchmarks (PACS, Office-Caltech-10) and of CINIC-10 / Mini-ImageNet.

Classes overlap (:func:`class_templates`, recipe version 2, issue 16): a class is three primitive
parts (ellipse, box, triangle, bar) at fixed places, and every class is an earlier class with one
part edited, so look-alike classes differ in one local detail. A part's colour is its class colour
plus a per-instance jitter (:data:`COLOUR_JITTER`), so colour is only a weak cue; an instance also
jitters scale, rotation, position and each part's place, size and angle. Version 1 (a distinct
layout and a fixed palette per class) let one domain's 21 training images per class reach 0.98
(local-only training), so no federated method could beat it.

A *style* decides how the same object looks, which is where the domains drift:

* ``photo``    — textured colour fill, a smooth grey-toned background, directional lighting;
* ``art``      — posterised, brush-stroked, blurred and warm-shifted paint (PACS "art_painting");
* ``cartoon``  — flat saturated fill with thick black outlines on a plain pastel background;
* ``sketch``   — broken pencil outlines only, on white paper (PACS "sketch");
* ``product``  — photo fill on a white background, centred (Office "amazon");
* ``clutter``  — a smaller object among 3–6 distractor parts of the same primitive kinds (Office "caltech");
* ``webcam``   — half resolution, washed out, a blue cast and sensor noise (Office "webcam").

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

RECIPE_VERSION = 2  # 2: overlapping, colour-jittered class templates and stronger styles (issue 16)
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
DEFAULT_TEST_FRACTION = {"domains": 0.3, "cinic10": 0.2, "mini_imagenet": 0.2}
# CINIC-10 mixes CIFAR-10 (low-resolution photos) and down-sampled ImageNet images (objects in clutter):
# each image of the cinic10 layout draws its style (version 1: photo 0.7 / clutter 0.3)
CINIC_STYLES = ("photo", "clutter", "webcam")
CINIC_STYLE_SHARES = (0.4, 0.3, 0.3)


PART_KINDS = ("ellipse", "box", "triangle", "bar")
PARTS_PER_CLASS = 3
COLOUR_JITTER = 0.2  # per-instance spread of a part's colour around its class colour


def _random_part(rng: np.random.Generator) -> dict:
    return {
        "kind": str(rng.choice(PART_KINDS)),
        "centre": rng.uniform(-0.35, 0.35, size=2),
        "half": rng.uniform(0.22, 0.42, size=2),
        "angle": float(rng.uniform(0, np.pi)),
        "colour": rng.uniform(0.05, 0.95, size=3),
    }


def class_templates(num_classes: int, seed: int) -> list[list[dict]]:
    """Overlapping class templates: a seeded tree of one-part edits.

    Class 0 is :data:`PARTS_PER_CLASS` random parts. Every later class copies an earlier one (its
    parent) and edits one part: either only its kind (same place and size, another primitive) or
    the whole part (a new primitive at a new place). A class therefore shares all but one part,
    at the same places, with its parent and its siblings, like look-alike real classes; no
    template carries a colour (colours are drawn per instance), so the shape is the only cue.
    """
    rng = np.random.default_rng([seed, 7919])
    templates = [[_random_part(rng) for _ in range(PARTS_PER_CLASS)]]
    while len(templates) < num_classes:
        child = [dict(part) for part in templates[int(rng.integers(len(templates)))]]
        edited = int(rng.integers(PARTS_PER_CLASS))
        if rng.random() < 0.5:
            others = [k for k in PART_KINDS if k != child[edited]["kind"]]
            child[edited]["kind"] = str(rng.choice(others))
        else:
            child[edited] = _random_part(rng)
        templates.append(child)
    return templates


def _part_mask(
    part: dict, xs: torch.Tensor, ys: torch.Tensor, scale: float, shift: np.ndarray, rotation: float
) -> torch.Tensor:
    angle = part["angle"] + rotation
    # the part's place turns with the object (rotation about the object's centre)
    c, s = np.cos(rotation), np.sin(rotation)
    px, py = part["centre"]
    cx, cy = (np.array([c * px - s * py, s * px + c * py]) * scale + shift).tolist()
    hx, hy = (part["half"] * scale).tolist()
    if part["kind"] == "bar":
        hy = hy * 0.35
    u = (xs - cx) * np.cos(angle) + (ys - cy) * np.sin(angle)
    v = -(xs - cx) * np.sin(angle) + (ys - cy) * np.cos(angle)
    if part["kind"] == "ellipse":
        return ((u / hx) ** 2 + (v / hy) ** 2 <= 1).float()
    if part["kind"] in ("box", "bar"):
        return ((u.abs() <= hx) & (v.abs() <= hy)).float()
    return ((v >= -hy) & (v <= hy) & (u.abs() <= hx * (hy - v) / (2 * hy))).float()  # triangle, apex up


def _blur(img: torch.Tensor, k: int) -> torch.Tensor:
    return F.avg_pool2d(img[None], k, stride=1, padding=k // 2, count_include_pad=False)[0]


def _smooth(rng: np.random.Generator, size: int, cells: int, channels: int = 3) -> torch.Tensor:
    coarse = torch.from_numpy(rng.random((channels, cells, cells), dtype=np.float32))
    return F.interpolate(coarse[None], size=(size, size), mode="bilinear", align_corners=False)[0]


def _outline(mask: torch.Tensor, width: int) -> torch.Tensor:
    eroded = -F.max_pool2d(-mask[None, None], 2 * width + 1, stride=1, padding=width)[0, 0]
    return (mask - eroded).clamp(0, 1)


def _strokes(rng: np.random.Generator, xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Oriented brush-stroke texture in [-1, 1] (one random direction and frequency per image)."""
    angle = float(rng.uniform(0, np.pi))
    freq = float(rng.uniform(5, 9))
    phase = float(rng.uniform(0, 2 * np.pi))
    wobble = 0.6 * torch.sin(3 * (xs * np.sin(angle) - ys * np.cos(angle)) + phase)
    return torch.sin(freq * np.pi * (xs * np.cos(angle) + ys * np.sin(angle)) + wobble)


def _distractor(rng: np.random.Generator) -> dict:
    return {
        "kind": str(rng.choice(PART_KINDS)),
        "centre": rng.uniform(-0.85, 0.85, 2),
        "half": rng.uniform(0.1, 0.24, 2),
        "angle": float(rng.uniform(0, np.pi)),
    }


def render_object(template: list[dict], style: str, rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """One instance of the class ``template`` (:func:`class_templates`) in ``style``: ``uint8 [size, size, 3]``.

    Instances jitter the object's scale, rotation and position, and each part's place, size and
    angle; the colours are drawn per instance (an object palette around one random hue). The
    style decides background, fill, outline and the image-level degradations (module docstring).
    """
    if style not in STYLES:
        raise invalid_value("dataset.twin.style", style, "one of " + ", ".join(STYLES))
    coords = torch.linspace(-1, 1, size)
    ys, xs = torch.meshgrid(coords, coords, indexing="ij")
    scale = float(rng.uniform(0.8, 1.1)) * {"clutter": 0.75}.get(style, 1.0)
    shift = rng.uniform(-0.15, 0.15, size=2) * (0.3 if style == "product" else 1.0)
    rotation = float(rng.uniform(-0.3, 0.3))
    masks = []
    for part in template:
        jittered = {
            **part,
            "centre": part["centre"] + rng.normal(0, 0.04, 2),
            "half": part["half"] * rng.uniform(0.8, 1.2, 2),
            "angle": part["angle"] + float(rng.normal(0, 0.1)),
        }
        masks.append(_part_mask(jittered, xs, ys, scale, shift, rotation))
    colours = [
        torch.from_numpy(np.clip(part["colour"] + rng.normal(0, COLOUR_JITTER, 3), 0, 1).astype(np.float32))
        for part in template
    ]

    if style == "sketch":
        background = torch.full((3, size, size), float(rng.uniform(0.88, 1.0)))
    elif style == "cartoon":
        pastel = rng.uniform(0.65, 1.0, 3).astype(np.float32)
        background = torch.from_numpy(pastel)[:, None, None].expand(3, size, size).clone()
    elif style == "product":
        background = torch.ones(3, size, size) * 0.97
    else:
        grey = _smooth(rng, size, int(rng.integers(2, 6)), 1)
        tint = torch.from_numpy(rng.uniform(-0.08, 0.08, 3).astype(np.float32))[:, None, None]
        background = (0.3 + 0.4 * grey + tint).expand(3, size, size).clone()
    img = background.clone()
    if style == "clutter":  # distractor parts of the same primitive kinds and sizes as the objects' parts
        for _ in range(int(rng.integers(3, 7))):
            m = _part_mask(_distractor(rng), xs, ys, 1.0, np.zeros(2), 0.0)
            colour = torch.from_numpy(rng.uniform(0, 1, 3).astype(np.float32))[:, None, None]
            img = img * (1 - m) + colour * m

    for mask, colour in zip(masks, colours, strict=True):
        if style == "sketch":  # pencil outline only, with broken strokes
            outline = _outline(mask, max(1, size // 32)) * (_smooth(rng, size, 6, 1)[0] > 0.3).float()
            img = img * (1 - 0.8 * outline)
            continue
        fill = colour[:, None, None].expand(3, size, size)
        if style in ("photo", "product", "clutter", "webcam"):
            fill = (fill * (0.6 + 0.8 * _smooth(rng, size, 8))).clamp(0, 1)
        elif style == "cartoon":  # flat, saturated
            fill = ((fill - fill.mean(0, keepdim=True)) * 1.8 + fill.mean(0, keepdim=True)).clamp(0, 1)
        img = img * (1 - mask) + fill * mask
        if style == "cartoon":
            img = img * (1 - _outline(mask, max(1, size // 24)))

    if style in ("photo", "product", "clutter"):  # directional lighting
        angle = float(rng.uniform(0, 2 * np.pi))
        img = img * (1 + 0.25 * (xs * np.cos(angle) + ys * np.sin(angle)))[None]
    elif style == "art":  # posterised paint with brush strokes, blurred, warm
        img = (img * 3).round() / 3 + 0.08 * _strokes(rng, xs, ys)[None]
        img = _blur(img, max(3, size // 12 | 1)) * torch.tensor([1.15, 1.0, 0.75])[:, None, None]
    elif style == "webcam":  # low resolution, washed out, blue cast
        low = F.interpolate(img[None], size=(size // 2, size // 2), mode="bilinear", align_corners=False)
        img = F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)[0]
        img = (0.2 + 0.7 * img) * torch.tensor([0.85, 1.05, 1.25])[:, None, None]
    noise = {"webcam": 0.05, "art": 0.03, "photo": 0.03, "clutter": 0.03}.get(style, 0.02)
    img = (img + torch.from_numpy(rng.normal(0, noise, (3, size, size)).astype(np.float32))).clamp(0, 1)
    return (img.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)


class StyledObjectsTwin(CachedTwin):
    """Writes procedural object classes (module docstring) in one of :data:`LAYOUTS`.

    Args:
        layout: ``domains`` | ``cinic10`` | ``mini_imagenet``.
        class_names: the class folder names (``mini_imagenet``: wnid-like labels).
        domains: ``{domain folder: style}`` for ``domains`` (e.g. :data:`PACS_DOMAINS`); ignored otherwise.
        per_class: images per class (per domain).
        size: image side in pixels.
        seed: seed of the class templates and of every instance.
        test_fraction: share of each class's images in the test split (null: the layout's default,
            :data:`DEFAULT_TEST_FRACTION`); the rest is train (``cinic10`` / ``mini_imagenet``: train
            and valid / val, 3 : 1). A size setting: a larger test split at the same training size.
    """

    def __init__(
        self,
        layout: str,
        class_names: list[str] | tuple[str, ...],
        domains: dict[str, str] | None = None,
        per_class: int = 30,
        size: int = 64,
        seed: int = 0,
        test_fraction: float | None = None,
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
        self.test_fraction = float(DEFAULT_TEST_FRACTION[layout] if test_fraction is None else test_fraction)
        if not 0.0 < self.test_fraction < 1.0:
            raise invalid_value("dataset.twin.test_fraction", test_fraction, "a number in (0, 1)")

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
            "test_fraction": self.test_fraction,
            **(
                {"cinic_styles": dict(zip(CINIC_STYLES, CINIC_STYLE_SHARES, strict=True))}
                if self.layout == "cinic10"
                else {}
            ),
        }

    def _fractions(self) -> tuple[float, ...]:
        """Split shares (train, test) or (train, valid, test)."""
        rest = 1.0 - self.test_fraction
        if self.layout == "domains":
            return (rest, self.test_fraction)
        return (0.75 * rest, 0.25 * rest, self.test_fraction)

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
        templates = class_templates(len(self.class_names), self.seed)
        if self.layout == "domains":
            for domain, style in self.domains.items():
                for k, name in enumerate(self.class_names):
                    for i, split in enumerate(self._splits(rng, ("train", "test"), self._fractions())):
                        folder = os.path.join(out, domain, split, name)
                        os.makedirs(folder, exist_ok=True)
                        Image.fromarray(render_object(templates[k], style, rng, self.size)).save(
                            os.path.join(folder, f"{name}_{i:04d}.png")
                        )
        elif self.layout == "cinic10":
            for k, name in enumerate(self.class_names):
                for i, split in enumerate(self._splits(rng, ("train", "valid", "test"), self._fractions())):
                    folder = os.path.join(out, split, name)
                    os.makedirs(folder, exist_ok=True)
                    style = str(
                        rng.choice(CINIC_STYLES, p=CINIC_STYLE_SHARES)
                    )  # CIFAR and ImageNet looks mixed
                    Image.fromarray(render_object(templates[k], style, rng, self.size)).save(
                        os.path.join(folder, f"{name}_{i:04d}.png")
                    )
        else:  # mini_imagenet: images/ + csv split files (filename,label)
            os.makedirs(os.path.join(out, "images"))
            rows: dict[str, list[tuple[str, str]]] = {"train": [], "val": [], "test": []}
            for k, name in enumerate(self.class_names):
                for i, split in enumerate(self._splits(rng, ("train", "val", "test"), self._fractions())):
                    filename = f"{name}{i:08d}.jpg"
                    Image.fromarray(render_object(templates[k], "photo", rng, self.size)).save(
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
