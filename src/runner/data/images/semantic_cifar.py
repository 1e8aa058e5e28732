"""A CIFAR-format twin whose visual similarity follows the class names' semantics (FedSM's premise).

:class:`~runner.data.images.cifar.ProceduralCifarTwin` gives every CIFAR-10 class its own colour
family *and* its own shape, so cat and dog, or automobile and truck, are no more alike than cat and
truck: a text encoder's class-name relevance has nothing to exploit there, and its CIFAR-100 twin
uses numbered names (``class_00`` …) with no semantics at all.

:class:`SemanticCifarTwin` keeps that file format and takes the class appearances from the text
encoder FedSM uses (recipe version 2, issue 16): each class gets an appearance code whose distances
to the other classes' codes are the encoder's class-name distances (:func:`class_codes`, classical
MDS of ``sqrt(2 − 2 S)``), rendered as a smooth colour pattern inside an object of random shape
(:func:`code_basis`). So the classes a classifier confuses are the classes whose names the encoder
finds similar, with the same ranking as FedSM's relevance ``S`` (with all-MiniLM-L6-v2 on CIFAR-10:
automobile ~ truck, cat ~ dog, deer ~ horse, ship ~ airplane). Version 1 used hand-picked look-alike
pairs that disagreed with MiniLM's own neighbours (bird's nearest name is dog, frog's is cat), and
MiniLM's similarities are flat (0.2–0.67), so FedSM's selection by ``S`` hardly met the twin's
confusions.

CIFAR-100 writes the real 100 fine names (alphabetical, as in ``meta``) and their 20 superclasses
(``coarse_labels``); its codes keep the leading ``code_dims`` MDS axes of the 100 names.

The long-tail partition keeps classes in label order (``n_c = n_max·IF^(−c/(C−1))``), so tail
classes (CIFAR-10: horse, ship, truck) have head or medium classes as semantic neighbours
(deer, airplane, automobile).
"""

from __future__ import annotations

import functools
import os
import pickle
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from runner.data.images.cifar import (
    CIFAR10_NAMES,
    LAYOUTS,
    ProceduralCifarTwin,
    load_cifar_pickle,
    object_mask,
)
from runner.errors import invalid_value
from runner.models.text.embeddings import class_name_embeddings, encoder_key
from runner.models.text.encoders import MiniLMTextEncoder

__all__ = ["CIFAR100_COARSE", "CIFAR100_FINE", "SemanticCifarTwin", "class_codes", "code_basis"]

CIFAR100_COARSE = {
    "aquatic_mammals": ["beaver", "dolphin", "otter", "seal", "whale"],
    "fish": ["aquarium_fish", "flatfish", "ray", "shark", "trout"],
    "flowers": ["orchid", "poppy", "rose", "sunflower", "tulip"],
    "food_containers": ["bottle", "bowl", "can", "cup", "plate"],
    "fruit_and_vegetables": ["apple", "mushroom", "orange", "pear", "sweet_pepper"],
    "household_electrical_devices": ["clock", "keyboard", "lamp", "telephone", "television"],
    "household_furniture": ["bed", "chair", "couch", "table", "wardrobe"],
    "insects": ["bee", "beetle", "butterfly", "caterpillar", "cockroach"],
    "large_carnivores": ["bear", "leopard", "lion", "tiger", "wolf"],
    "large_man-made_outdoor_things": ["bridge", "castle", "house", "road", "skyscraper"],
    "large_natural_outdoor_scenes": ["cloud", "forest", "mountain", "plain", "sea"],
    "large_omnivores_and_herbivores": ["camel", "cattle", "chimpanzee", "elephant", "kangaroo"],
    "medium_mammals": ["fox", "porcupine", "possum", "raccoon", "skunk"],
    "non-insect_invertebrates": ["crab", "lobster", "snail", "spider", "worm"],
    "people": ["baby", "boy", "girl", "man", "woman"],
    "reptiles": ["crocodile", "dinosaur", "lizard", "snake", "turtle"],
    "small_mammals": ["hamster", "mouse", "rabbit", "shrew", "squirrel"],
    "trees": ["maple_tree", "oak_tree", "palm_tree", "pine_tree", "willow_tree"],
    "vehicles_1": ["bicycle", "bus", "motorcycle", "pickup_truck", "train"],
    "vehicles_2": ["lawn_mower", "rocket", "streetcar", "tank", "tractor"],
}
CIFAR100_FINE = sorted(name for names in CIFAR100_COARSE.values() for name in names)
COARSE_NAMES = sorted(CIFAR100_COARSE)


def _coarse_of_fine() -> np.ndarray:
    """The superclass index of each fine label."""
    coarse = np.zeros(100, dtype=np.int64)
    for s, group in enumerate(COARSE_NAMES):
        for name in CIFAR100_COARSE[group]:
            coarse[CIFAR100_FINE.index(name)] = s
    return coarse


def class_codes(embeddings: torch.Tensor, dims: int, power: float = 1.0) -> np.ndarray:
    """``[C, dims]`` appearance codes whose distances follow the encoder's class-name geometry.

    The class-name embeddings ``t̂_c`` (L2-normalised) have distances ``d_cc' = sqrt(2 − 2 S_cc')``
    with ``S = t̂ t̂ᵀ`` (FedSM's relevance before its diagonal fix). Classical MDS of ``d^power``
    gives coordinates whose Euclidean distances reproduce them (exactly for ``power = 1`` and
    ``dims >= C − 1``: the centred embeddings up to a rotation; a larger ``power`` sharpens the
    contrast between near and far names, same ordering). The codes are scaled so that the mean
    distance between two classes is 1.
    """
    t = torch.nn.functional.normalize(embeddings.double(), dim=1)
    c = t.shape[0]
    dist = (2.0 - 2.0 * (t @ t.T)).clamp_min(0.0).sqrt() ** float(power)
    centring = torch.eye(c, dtype=torch.float64) - 1.0 / c
    gram = -0.5 * centring @ (dist**2) @ centring
    values, vectors = torch.linalg.eigh(gram)
    order = values.argsort(descending=True)[: max(1, min(int(dims), c - 1))]
    codes = vectors[:, order] * values[order].clamp_min(0.0).sqrt()
    pairs = torch.cdist(codes, codes)[~torch.eye(c, dtype=torch.bool)]
    return (codes / pairs.mean().clamp_min(1e-12)).numpy()


def code_basis(dims: int, seed: int, cells: int = 6) -> np.ndarray:
    """``[dims, 3, 32, 32]`` orthonormal smooth colour patterns (one per code coordinate): seeded
    random ``cells × cells`` colour fields, bilinearly upsampled, orthonormalised over the pixels."""
    rng = np.random.default_rng([seed, 4099])
    coarse = torch.from_numpy(rng.normal(size=(dims, 3, cells, cells)))
    fields = torch.nn.functional.interpolate(coarse, size=(32, 32), mode="bilinear", align_corners=False)
    q, _ = torch.linalg.qr(fields.reshape(dims, -1).T)
    return q.T.reshape(dims, 3, 32, 32).numpy()


class SemanticCifarTwin(ProceduralCifarTwin):
    """CIFAR-format long-tail twin whose class appearances follow the class names' text embeddings.

    Each class ``c`` has an appearance code ``a_c`` (:func:`class_codes`: the encoder's class-name
    distances, mean class distance 1); an image of class ``c`` is an object of a random shape and
    place (the nuisance) filled with the pattern ``128 + contrast·√3072 · Σ_j (a_cj + ε_j) B_j``
    over the orthonormal smooth colour patterns ``B_j`` (:func:`code_basis`), ``ε ~ N(0,
    code_noise²)``, on a textured background with pixel noise. Two classes are therefore as hard to
    tell apart as their names are similar to the encoder: the confusions a classifier makes follow
    ``S``, which is what FedSM's semantic category selection assumes.

    Args:
        variant, train_per_class, test_per_class, noise, seed: as :class:`ProceduralCifarTwin`.
        text_encoder: zero-argument constructor of the class-name encoder (``encode(list[str])``);
            None = the offline all-MiniLM-L6-v2 (:class:`~runner.models.text.MiniLMTextEncoder`),
            the default text encoder of ``fl_strategy=fedsm``.
        embedding_cache_dir: disk cache of the class-name embeddings (shared with FedSM's).
        code_dims: code coordinates kept (at most ``C − 1``; CIFAR-100: the leading MDS axes).
        code_noise: per-instance spread ``σ`` of each code coordinate, in units of the mean class
            distance; an image's code moves by about ``σ·√code_dims`` in all, so a twin with more
            coordinates needs a smaller ``σ`` for the same overlap (CIFAR-10, 9 coordinates: 0.25;
            CIFAR-100, 48: 0.108; both 0.75 class distances in all).
        contrast: pixel amplitude of a unit-norm code (0–255 scale, RMS over the image).
        semantic_power: ``power`` of :func:`class_codes` (1 = the encoder's own geometry; 2, the
            default, sharpens MiniLM's flat similarities so that a class's errors fall on its nearest
            names: with 1, 22 % of a centrally trained MLP's errors hit the nearest name, with 2, 39 %,
            uniform is 11 %; measured on 300 images per class).
    """

    RECIPE_VERSION = 2  # 2: appearance codes from the encoder's similarities (issue 16); 1: hand-made pairs

    def __init__(
        self,
        variant: str = "cifar10",
        train_per_class: int = 200,
        test_per_class: int = 50,
        noise: float = 20.0,
        seed: int = 0,
        text_encoder: Callable[[], Any] | None = None,
        embedding_cache_dir: str | None = None,
        code_dims: int = 48,
        code_noise: float = 0.25,
        contrast: float = 60.0,
        semantic_power: float = 2.0,
    ) -> None:
        super().__init__(variant, train_per_class, test_per_class, noise, seed)
        if int(code_dims) < 1:
            raise invalid_value("dataset.twin.code_dims", code_dims, "an integer >= 1")
        if float(semantic_power) <= 0:
            raise invalid_value("dataset.twin.semantic_power", semantic_power, "a number > 0")
        self.text_encoder = text_encoder if text_encoder is not None else functools.partial(MiniLMTextEncoder)
        self.embedding_cache_dir = embedding_cache_dir
        self.code_dims = int(code_dims)
        self.code_noise = float(code_noise)
        self.contrast = float(contrast)
        self.semantic_power = float(semantic_power)
        self._codes: np.ndarray | None = None

    @property
    def class_names(self) -> list[str]:
        return list(CIFAR10_NAMES) if self.variant == "cifar10" else list(CIFAR100_FINE)

    def recipe(self) -> dict:
        return {
            "recipe_version": self.RECIPE_VERSION,
            "variant": self.variant,
            "train_per_class": self.train_per_class,
            "test_per_class": self.test_per_class,
            "noise": self.noise,
            "seed": self.seed,
            "text_encoder": encoder_key(self.text_encoder, self.class_names),
            "code_dims": self.code_dims,
            "code_noise": self.code_noise,
            "contrast": self.contrast,
            "semantic_power": self.semantic_power,
        }

    def codes(self) -> np.ndarray:
        """``[C, dims]`` class appearance codes (:func:`class_codes` of the encoder's embeddings)."""
        if self._codes is None:
            embeddings = class_name_embeddings(self.text_encoder, self.class_names, self.embedding_cache_dir)
            self._codes = class_codes(embeddings, self.code_dims, self.semantic_power)
        return self._codes

    def render(self, labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``uint8 [N, 3072]`` rows (channel-major): the class code's pattern inside a random object."""
        codes = self.codes()
        basis = code_basis(codes.shape[1], self.seed).reshape(codes.shape[1], -1)
        n = len(labels)
        jittered = codes[labels] + rng.normal(0.0, self.code_noise, size=(n, codes.shape[1]))
        patterns = (128.0 + self.contrast * np.sqrt(3072.0) * (jittered @ basis)).reshape(n, 3, 32, 32)
        yy, xx = np.mgrid[0:32, 0:32].astype(np.float32)
        out = np.empty((n, 3, 32, 32), dtype=np.uint8)
        for i in range(n):
            bg = rng.uniform(60, 160, 3).astype(np.float32)[:, None, None]
            coarse = np.kron(rng.uniform(-25, 25, (1, 5, 5)), np.ones((1, 7, 7)))[:, :32, :32]
            cx, cy = rng.uniform(13, 19, 2)
            radius = rng.uniform(9, 13)
            theta = rng.uniform(0, np.pi)
            u = ((xx - cx) * np.cos(theta) + (yy - cy) * np.sin(theta)) / radius
            v = (-(xx - cx) * np.sin(theta) + (yy - cy) * np.cos(theta)) / radius
            mask = object_mask(int(rng.integers(5)), u, v)
            img = np.where(mask[None], patterns[i], bg + coarse) + rng.normal(0, self.noise, (3, 32, 32))
            out[i] = np.clip(img, 0, 255).astype(np.uint8)
        return out.reshape(n, 3072)

    def write(self, out: str) -> None:
        super().write(out)
        if self.variant != "cifar100":
            return  # the CIFAR-10 twin already carries the real names
        layout = LAYOUTS["cifar100"]
        folder = os.path.join(out, layout["folder"])
        coarse = _coarse_of_fine()
        for name in [*layout["train"], *layout["test"]]:
            path = os.path.join(folder, name)
            batch = load_cifar_pickle(path)
            batch[b"coarse_labels"] = coarse[np.asarray(batch[b"fine_labels"])].tolist()
            with open(path, "wb") as fh:
                pickle.dump(batch, fh, protocol=2)
        meta = {
            layout["names"]: [n.encode() for n in CIFAR100_FINE],
            b"coarse_label_names": [n.encode() for n in COARSE_NAMES],
        }
        with open(os.path.join(folder, layout["meta"]), "wb") as fh:
            pickle.dump(meta, fh, protocol=2)
