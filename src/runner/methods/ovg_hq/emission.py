"""From per-window anchor outputs to emitted moments (card ``ovg_hq.md``, "Emission").

At clip boundary ``t`` (the end of clip ``t − 1``; time ``t·c`` seconds, ``c`` = 2 s) every anchor of
length ``L`` with foreground probability ``p_fg ≥ threshold`` emits

    e = t + L·Δo,   s = e − L·exp(Δl)      (clip units, then × c seconds)

with score ``p_fg`` and generation time ``t_gen = t·c``. Per video, the emissions of all boundaries go
through greedy NMS (IoU ``nms_iou`` = 0.1, highest score first; ties keep emission order) and are clipped
to ``[0, max_time]`` (150 s). A video with no emission gets the single prediction ``[0, 0, 0, 0]``.
A prediction row is ``[start_s, end_s, score, t_gen_s]``.
"""

from __future__ import annotations

import numpy as np
import torch

EMPTY_PREDICTION = np.zeros((1, 4), dtype=np.float64)


def decode_spans(spans: torch.Tensor, anchors: torch.Tensor, boundaries: torch.Tensor) -> torch.Tensor:
    """``spans [..., A, 2]`` (Δo, Δl) at ``boundaries [...]`` → ``[..., A, 2]`` (start, end) in clip units."""
    t = boundaries.to(spans.dtype).unsqueeze(-1)
    end = t + anchors * spans[..., 0]
    start = end - anchors * torch.exp(spans[..., 1].clamp(max=20.0))
    return torch.stack([start, end], dim=-1)


def emit(
    logits: torch.Tensor,
    spans: torch.Tensor,
    anchors: torch.Tensor,
    first_boundary: int,
    clip_seconds: float,
    threshold: float,
    max_time: float | None,
) -> np.ndarray:
    """Emissions ``float64 [P, 4]`` of one video from ``logits [n, A, 2]`` and ``spans [n, A, 2]`` of the
    windows ending at boundaries ``first_boundary .. first_boundary + n − 1`` (in emission order:
    time, then anchor), clipped; before NMS."""
    n = logits.shape[0]
    boundaries = torch.arange(first_boundary, first_boundary + n, device=logits.device)
    prob = torch.softmax(logits.float(), dim=-1)[..., 0]
    keep = prob >= threshold
    if not bool(keep.any()):
        return np.zeros((0, 4), dtype=np.float64)
    windows = decode_spans(spans.float(), anchors.float(), boundaries) * clip_seconds
    t_gen = (boundaries.to(prob.dtype) * clip_seconds).unsqueeze(-1).expand_as(prob)
    rows = torch.stack([windows[..., 0], windows[..., 1], prob, t_gen], dim=-1)[keep]
    out = rows.detach().cpu().double().numpy()
    if max_time is not None:
        out[:, :2] = np.clip(out[:, :2], 0.0, float(max_time))
    return out


def interval_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix ``[len(a), len(b)]`` of 1-D intervals given as ``[..., (start, end)]``."""
    inter = np.clip(
        np.minimum(a[:, None, 1], b[None, :, 1]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None
    )
    union = np.maximum(a[:, None, 1], b[None, :, 1]) - np.minimum(a[:, None, 0], b[None, :, 0])
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def nms(predictions: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS over ``[P, 4]`` rows, highest score first (stable: earlier rows win ties); a row whose
    IoU with a kept one is ``≥ iou_threshold`` is dropped (QVHighlights' ``temporal_nms``). Returns the
    kept rows in descending score order."""
    if len(predictions) == 0:
        return predictions
    order = np.argsort(-predictions[:, 2], kind="stable")
    rows = predictions[order]
    iou = interval_iou(rows[:, :2], rows[:, :2])
    suppressed = np.zeros(len(rows), dtype=bool)
    keep = []
    for i in range(len(rows)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] >= iou_threshold
    return rows[keep]


def finalize(emissions: np.ndarray, nms_iou: float) -> np.ndarray:
    """Video-level NMS of all emissions; ``[[0, 0, 0, 0]]`` when nothing was emitted."""
    if len(emissions) == 0:
        return EMPTY_PREDICTION.copy()
    return nms(emissions, nms_iou)
