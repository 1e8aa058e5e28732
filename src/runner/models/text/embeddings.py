"""Class-name text embeddings, computed once per (encoder, names) and cached in memory and on disk.

Shared by FedSM's semantic relevance (:mod:`runner.methods.fedsm.strategy`) and the semantic CIFAR
twin (:mod:`runner.data.images.semantic_cifar`), whose class appearances follow the same encoder's
similarities: with the same encoder constructor and names both get the same cache entry, so a run
that generates the twin and then trains FedSM loads the encoder once.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

__all__ = ["class_name_embeddings", "encoder_key"]

_EMBEDDINGS: dict[str, torch.Tensor] = {}


def encoder_key(encoder: Callable[[], Any], names: Sequence[str]) -> str:
    """A stable description of (encoder constructor, class names) for the embedding cache."""
    if isinstance(encoder, functools.partial):
        func = encoder.func
        desc = {"target": f"{func.__module__}.{func.__qualname__}", "args": repr(encoder.args)}
        desc["kwargs"] = json.dumps(encoder.keywords, sort_keys=True, default=str)
    else:
        module = getattr(encoder, "__module__", type(encoder).__module__)
        desc = {"target": f"{module}.{getattr(encoder, '__qualname__', type(encoder).__name__)}"}
    desc["names"] = list(names)
    return hashlib.sha256(json.dumps(desc, sort_keys=True).encode()).hexdigest()[:24]


def class_name_embeddings(
    encoder: Callable[[], Any], names: Sequence[str], cache_dir: str | None = None
) -> torch.Tensor:
    """``[C, e]`` text embeddings of ``names`` by ``encoder().encode``, computed once per
    (encoder, names) and cached in memory and, with ``cache_dir``, in ``<cache_dir>/<key>.pt``."""
    key = encoder_key(encoder, names)
    if key in _EMBEDDINGS:
        return _EMBEDDINGS[key]
    path = Path(cache_dir) / f"{key}.pt" if cache_dir else None
    if path is not None and path.is_file():
        embeddings = torch.load(path, weights_only=True)
    else:
        embeddings = encoder().encode(list(names)).float().cpu()
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            torch.save(embeddings, tmp)
            tmp.replace(path)
    _EMBEDDINGS[key] = embeddings
    return embeddings
