"""Pieces shared by the image / tabular readers and twins: the loaded splits and the twin cache."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass

import torch

from runner.data.twin import CachedTwin as SharedCachedTwin

log = logging.getLogger("runner.data")

__all__ = ["ArraySplits", "CachedTwin"]


@dataclass
class ArraySplits:
    """A dataset loaded as tensors: ``x_*`` float32 (normalised), ``y_*`` int64; multi-domain
    datasets (Digits-5, PACS, ...) also give each sample's domain index (``domain_*`` int64)."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    class_names: list[str]
    domain_train: torch.Tensor | None = None
    domain_test: torch.Tensor | None = None
    domain_names: list[str] | None = None


class CachedTwin(SharedCachedTwin):
    """The shared twin cache (:class:`runner.data.twin.CachedTwin`) with the class name and a
    per-class ``RECIPE_VERSION`` folded into the recipe hash, so bumping the version regenerates."""

    RECIPE_VERSION = 1

    @property
    def twin_name(self) -> str:
        return type(self).__name__

    def recipe_hash(self) -> str:
        payload = {"class": type(self).__name__, "version": self.RECIPE_VERSION, **self.recipe()}
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
