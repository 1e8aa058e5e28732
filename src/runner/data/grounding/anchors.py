"""Anchor labels of online grounding (card ``ovg_hq.md``, "Anchor labels"), vectorised and cached.

Time is in clip units: a GT window ``[s, e]`` seconds becomes ``[round(s/c), round(e/c)]`` (``c`` the
clip length, 2 s; Python/NumPy round-half-to-even as the code). At every clip boundary ``t = 1..T``
(the end of clip ``t − 1``) there is one anchor per length ``L`` covering ``[t − L, t]``. Against a GT
``[gs, ge]`` an anchor is positive when

* ``IoU ≥ pos_iou`` with ``IoU = (min(t, ge) − max(t − L, gs)) / max(max(t, ge) − min(t − L, gs), 1)``;
* or it is the longest anchor (the last of ``anchors``) and the GT strictly contains it
  (``gs < t − L`` and ``ge > t``, and ``t > gs``);
* or it is the shortest (the first) and it strictly contains the GT (``t − L < gs``, ``t > ge``, ``ge > t − L``).

Regression targets come from the last GT (in file order) that makes the anchor positive:
``Δo = (ge − t)/L`` (where the ongoing moment ends, relative to now) and ``Δl = log(max(1, ge − gs)/L)``.
Labels of all queries are computed at once with broadcasting (``[Q, T, A, G]``) and cached as ``.npz``
under ``cache_dir/<hash>.npz``, the hash covering the windows, clip counts and the rule's parameters.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger("runner.data")

LABEL_VERSION = 1


def windows_to_clips(windows: Sequence[Sequence[float]], clip_seconds: float) -> np.ndarray:
    """``int64 [G, 2]`` clip boundaries ``round(seconds / clip_seconds)``."""
    if not len(windows):
        return np.zeros((0, 2), dtype=np.int64)
    return np.round(np.asarray(windows, dtype=np.float64) / clip_seconds).astype(np.int64)


def anchor_labels(
    windows: Sequence[Sequence[Sequence[float]]],
    num_clips: Sequence[int],
    anchors: Sequence[int] = (1, 2, 4, 8),
    pos_iou: float = 0.5,
    clip_seconds: float = 2.0,
    max_clips: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Labels for every query: ``positive bool [Q, T, A]`` and ``targets float32 [Q, T, A, 2]`` (Δo, Δl).

    ``windows[q]``: the GT windows of query ``q`` in seconds; ``num_clips[q]``: its video's clip count
    (boundaries past it are never positive). ``T = max_clips or max(num_clips)``; index ``i`` of the
    time axis is boundary ``t = i + 1``.
    """
    q_count = len(windows)
    t_count = int(max_clips or (max(num_clips) if len(num_clips) else 0))
    g_count = max((len(w) for w in windows), default=0)
    anchors_arr = np.asarray(anchors, dtype=np.float64)
    a_count = len(anchors_arr)
    positive = np.zeros((q_count, t_count, a_count), dtype=bool)
    targets = np.zeros((q_count, t_count, a_count, 2), dtype=np.float32)
    if q_count == 0 or t_count == 0 or g_count == 0:
        return positive, targets
    gt = np.zeros((q_count, g_count, 2), dtype=np.float64)
    has = np.zeros((q_count, g_count), dtype=bool)
    for q, wins in enumerate(windows):
        clips = windows_to_clips(wins, clip_seconds)
        gt[q, : len(clips)] = clips
        has[q, : len(clips)] = True
    t = np.arange(1, t_count + 1, dtype=np.float64)[None, :, None, None]  # [1, T, 1, 1]
    length = anchors_arr[None, None, :, None]  # [1, 1, A, 1]
    gs = gt[:, None, None, :, 0]  # [Q, 1, 1, G]
    ge = gt[:, None, None, :, 1]
    a_s = t - length
    inter = np.minimum(t, ge) - np.maximum(a_s, gs)
    union = np.maximum(np.maximum(t, ge) - np.minimum(a_s, gs), 1.0)
    hit = inter / union >= pos_iou
    longest = np.zeros((1, 1, a_count, 1), dtype=bool)
    longest[..., -1, :] = True
    shortest = np.zeros((1, 1, a_count, 1), dtype=bool)
    shortest[..., 0, :] = True
    hit |= longest & (t > gs) & (gs < a_s) & (ge > t)
    hit |= shortest & (ge > a_s) & (a_s < gs) & (t > ge)
    hit &= has[:, None, None, :]
    inside = np.arange(1, t_count + 1)[None, :] <= np.asarray(num_clips, dtype=np.int64)[:, None]  # [Q, T]
    hit &= inside[:, :, None, None]
    positive = hit.any(-1)
    # the last qualifying GT in file order (the code overwrites the targets in a loop)
    last = g_count - 1 - np.argmax(hit[..., ::-1], axis=-1)  # [Q, T, A]
    take = lambda arr: np.take_along_axis(np.broadcast_to(arr, hit.shape), last[..., None], -1)[..., 0]  # noqa: E731
    gs_sel, ge_sel = take(gs), take(ge)
    t_b = np.broadcast_to(t[..., 0], positive.shape)
    len_b = np.broadcast_to(length[..., 0], positive.shape)
    targets[..., 0] = np.where(positive, (ge_sel - t_b) / len_b, 0.0)
    targets[..., 1] = np.where(positive, np.log(np.maximum(1.0, ge_sel - gs_sel) / len_b), 0.0)
    return positive, targets


def label_recipe(
    windows: Sequence[Sequence[Sequence[float]]],
    num_clips: Sequence[int],
    anchors: Sequence[int],
    pos_iou: float,
    clip_seconds: float,
    max_clips: int | None,
) -> str:
    """The cache key: sha256 of everything the labels depend on."""
    payload = {
        "version": LABEL_VERSION,
        "windows": [[list(map(float, w)) for w in ws] for ws in windows],
        "num_clips": [int(n) for n in num_clips],
        "anchors": [int(a) for a in anchors],
        "pos_iou": float(pos_iou),
        "clip_seconds": float(clip_seconds),
        "max_clips": None if max_clips is None else int(max_clips),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def cached_anchor_labels(
    cache_dir: str | os.PathLike | None,
    windows: Sequence[Sequence[Sequence[float]]],
    num_clips: Sequence[int],
    anchors: Sequence[int] = (1, 2, 4, 8),
    pos_iou: float = 0.5,
    clip_seconds: float = 2.0,
    max_clips: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`anchor_labels`, read from / written to ``cache_dir/<recipe hash>.npz`` (atomic write)."""
    if cache_dir is None:
        return anchor_labels(windows, num_clips, anchors, pos_iou, clip_seconds, max_clips)
    key = label_recipe(windows, num_clips, anchors, pos_iou, clip_seconds, max_clips)
    path = Path(cache_dir) / f"anchors_{key}.npz"
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as data:
                return data["positive"].astype(bool), data["targets"].astype(np.float32)
        except (OSError, ValueError, KeyError):
            log.warning("anchor-label cache %s unreadable; recomputing", path)
    positive, targets = anchor_labels(windows, num_clips, anchors, pos_iou, clip_seconds, max_clips)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".anchors-", suffix=".npz")
    os.close(fd)
    try:
        np.savez(tmp, positive=positive, targets=targets)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return positive, targets
