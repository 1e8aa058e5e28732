"""Seeded, class-stratified splits shared by the data modules (skeleton datasets, video datasets)."""

from __future__ import annotations

import numpy as np

SPLITS = ("train", "val", "test")

__all__ = ["SPLITS", "stratified_split"]


def stratified_split(
    labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, np.ndarray]:
    """Per class, a seeded permutation cut into test (``round(n·test_fraction)``), val and train parts;
    every split keeps the class proportions. Returns sorted index arrays."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = int(round(len(members) * test_fraction))
        n_val = int(round(len(members) * val_fraction))
        parts["test"].append(members[:n_test])
        parts["val"].append(members[n_test : n_test + n_val])
        parts["train"].append(members[n_test + n_val :])
    return {name: np.sort(np.concatenate(chunks)).astype(np.int64) for name, chunks in parts.items()}
