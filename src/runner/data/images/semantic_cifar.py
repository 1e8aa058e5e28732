"""A CIFAR-format twin whose visual similarity follows the class names' semantics (FedSM's premise).

:class:`~runner.data.images.cifar.ProceduralCifarTwin` gives every CIFAR-10 class its own colour
family *and* its own shape (``shape = 3c mod 10``), so cat and dog, or automobile and truck, are no
more alike than cat and truck: a text encoder's class-name relevance has nothing to exploit there,
and its CIFAR-100 twin uses numbered names (``class_00`` …) with no semantics at all.

:class:`SemanticCifarTwin` keeps that renderer and file format and only changes the class → style
map (and, for CIFAR-100, writes the real fine and coarse label names):

* CIFAR-10: the semantic pairs airplane/ship, automobile/truck, cat/dog, deer/horse, bird/frog share
  a shape and stripe texture and differ in a neighbouring colour family (blue/cyan, red/pink,
  brown/grey, yellow/orange, green/magenta) — so near names are near images, as in real CIFAR-10,
  where the classifier's confusions follow the same pairs.
* CIFAR-100: the real 100 fine names (alphabetical, as in ``meta``) and their 20 superclasses; the
  five classes of a superclass share a shape / texture (20 of them: 5 shapes × 4 stripe frequencies)
  and differ in colour.

The long-tail partition keeps classes in label order (``n_c = n_max·IF^(−c/(C−1))``), so tail
classes (CIFAR-10: horse, ship, truck) have head or medium classes as semantic neighbours
(deer, airplane, automobile).
"""

from __future__ import annotations

import os
import pickle

import numpy as np

from runner.data.images.cifar import CIFAR10_NAMES, LAYOUTS, ProceduralCifarTwin, load_cifar_pickle

__all__ = ["CIFAR100_COARSE", "CIFAR100_FINE", "SemanticCifarTwin"]

# class -> (colour family index into cifar.HUES, shape id: kind = id % 5, stripe frequency = id // 5)
CIFAR10_STYLES = {
    "airplane": (2, 3),  # blue cross
    "ship": (5, 3),  # cyan cross
    "automobile": (0, 1),  # red square
    "truck": (9, 1),  # pink square
    "cat": (7, 0),  # brown disc
    "dog": (8, 0),  # grey disc
    "deer": (3, 2),  # yellow triangle
    "horse": (6, 2),  # orange triangle
    "bird": (1, 4),  # green ring
    "frog": (4, 9),  # magenta ring, finer stripes
}

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


def _cifar100_tables() -> tuple[np.ndarray, list[tuple[int, int]]]:
    """(coarse label of each fine label, style of each fine label)."""
    coarse = np.zeros(100, dtype=np.int64)
    styles: list[tuple[int, int]] = [(0, 0)] * 100
    for s, group in enumerate(COARSE_NAMES):
        for p, name in enumerate(CIFAR100_COARSE[group]):
            c = CIFAR100_FINE.index(name)
            coarse[c] = s
            styles[c] = ((2 * p + s % 2) % 10, s)  # same shape within a superclass, 5 distinct colours
    return coarse, styles


class SemanticCifarTwin(ProceduralCifarTwin):
    """:class:`ProceduralCifarTwin` with the semantic class → style map above (module docstring)."""

    RECIPE_VERSION = 1

    def _style(self, c: int) -> tuple[int, int]:
        if self.num_classes == 10:
            return CIFAR10_STYLES[CIFAR10_NAMES[c]]
        return _cifar100_tables()[1][c]

    def write(self, out: str) -> None:
        super().write(out)
        if self.variant != "cifar100":
            return  # the CIFAR-10 twin already carries the real names
        layout = LAYOUTS["cifar100"]
        folder = os.path.join(out, layout["folder"])
        coarse, _ = _cifar100_tables()
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
