"""Online video-grounding metrics (OVG-HQ, arXiv 2508.11903; card ``ovg_hq.md``, "Online metrics").

A prediction is ``[start, end, score, t_gen]`` (seconds; ``t_gen`` = when it was emitted). Its
timeliness against a GT window ending at ``gt_end``, with tolerance ``t_s`` seconds, is

    β = 1                          if t_gen ≤ gt_end
        1 − (t_gen − gt_end)/t_s   if gt_end < t_gen ≤ gt_end + t_s
        0                          otherwise.

* ``oR@1,IoU=m``: the top-1 prediction (highest score; ties: the earliest in the list) against the GT
  window it overlaps most (ties: the first), ``β · 1[IoU ≥ m]``; mean over queries.
* ``omAP@m``: per-query AP where predictions (by descending score) are matched greedily to the
  unmatched GT window of highest IoU ≥ m; a true positive counts ``β`` of that window: precision
  ``Σβ_TP / (#TP + #FP)``, recall ``Σβ_TP / #GT``, VOC all-point interpolation; mean over queries;
  ``omAP`` is the mean over m ∈ 0.5:0.05:0.95.

Every number is also averaged over ``t_s ∈ tolerances`` (1, 3, 5 s). With ``online=False`` β ≡ 1 and
the metrics are the offline R@1 and mAP. Queries are matched by ``qid`` (the official code pairs them
by list position); a qid seen twice (e.g. padded DDP batches) counts once. Queries without GT windows
are not counted. States are per-query rows (``cat``), synchronised across processes by torchmetrics.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torchmetrics import Metric

__all__ = [
    "OnlineMeanAP",
    "OnlineRecallAt1",
    "average_precision",
    "query_average_precision",
    "query_recall_at_1",
    "timeliness",
]

MAP_IOUS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))


def timeliness(t_gen: np.ndarray | float, gt_end: np.ndarray | float, tolerance: float | None) -> np.ndarray:
    """β of the module docstring (``tolerance=None``: offline, β ≡ 1)."""
    t_gen, gt_end = np.asarray(t_gen, dtype=np.float64), np.asarray(gt_end, dtype=np.float64)
    if tolerance is None:
        return np.ones(np.broadcast(t_gen, gt_end).shape)
    late = t_gen - gt_end
    return np.where(late <= 0, 1.0, np.clip(1.0 - late / float(tolerance), 0.0, 1.0))


def _iou(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    inter = np.clip(
        np.minimum(pred[:, None, 1], gt[None, :, 1]) - np.maximum(pred[:, None, 0], gt[None, :, 0]), 0, None
    )
    union = np.maximum(pred[:, None, 1], gt[None, :, 1]) - np.minimum(pred[:, None, 0], gt[None, :, 0])
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def query_recall_at_1(
    preds: np.ndarray, gts: np.ndarray, iou_thresholds: Sequence[float], tolerances: Sequence[float | None]
) -> np.ndarray:
    """``[len(tolerances), len(iou_thresholds)]`` values of ``β·1[IoU(top-1, GT) ≥ m]`` for one query."""
    out = np.zeros((len(tolerances), len(iou_thresholds)))
    if len(preds) == 0 or len(gts) == 0:
        return out
    top = preds[int(np.argmax(preds[:, 2]))]  # argmax returns the first of equal scores
    ious = _iou(top[None, :2], gts)[0]
    best = int(np.argmax(ious))
    hit = ious[best] >= np.asarray(iou_thresholds) - 1e-9
    for i, tol in enumerate(tolerances):
        out[i] = timeliness(top[3], gts[best, 1], tol) * hit
    return out


def average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """VOC all-point interpolated AP (QVHighlights' ``interpolated_precision_recall``)."""
    mprec = np.concatenate([[0.0], precision, [0.0]])
    mrec = np.concatenate([[0.0], recall, [1.0]])
    for i in range(len(mprec) - 2, -1, -1):
        mprec[i] = max(mprec[i], mprec[i + 1])
    idx = np.nonzero(mrec[1:] != mrec[:-1])[0] + 1
    return float(np.sum((mrec[idx] - mrec[idx - 1]) * mprec[idx]))


def query_average_precision(
    preds: np.ndarray, gts: np.ndarray, iou_thresholds: Sequence[float], tolerances: Sequence[float | None]
) -> np.ndarray:
    """``[len(tolerances), len(iou_thresholds)]`` β-weighted APs of one query."""
    out = np.zeros((len(tolerances), len(iou_thresholds)))
    if len(preds) == 0 or len(gts) == 0:
        return out
    order = np.argsort(-preds[:, 2], kind="stable")
    preds = preds[order]
    ious = _iou(preds[:, :2], gts)  # [P, G]
    gt_order = np.argsort(-ious, axis=1, kind="stable")
    count = np.arange(1, len(preds) + 1, dtype=np.float64)
    for j, thr in enumerate(iou_thresholds):
        matched_gt = np.full(len(preds), -1)
        taken = np.zeros(len(gts), dtype=bool)
        for p in range(len(preds)):
            for g in gt_order[p]:
                if ious[p, g] < thr - 1e-9:
                    break
                if not taken[g]:
                    taken[g] = True
                    matched_gt[p] = g
                    break
        is_tp = matched_gt >= 0
        for i, tol in enumerate(tolerances):
            beta = np.where(is_tp, timeliness(preds[:, 3], gts[np.maximum(matched_gt, 0), 1], tol), 0.0)
            cum = np.cumsum(beta)
            out[i, j] = average_precision(cum / count, cum / len(gts))
    return out


class _PerQueryMetric(Metric):
    """Per-query rows ``[T, M]`` kept with their qid; ``compute`` averages unique qids."""

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(
        self, iou_thresholds: Sequence[float], tolerances: Sequence[float], online: bool, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.iou_thresholds = tuple(float(m) for m in iou_thresholds)
        self.tolerances: tuple[float | None, ...] = tuple(float(t) for t in tolerances) if online else (None,)
        self.online = bool(online)
        self.add_state("qids", default=[], dist_reduce_fx="cat")
        self.add_state("values", default=[], dist_reduce_fx="cat")

    def _per_query(self, preds: np.ndarray, gts: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def update(
        self,
        preds: Sequence[torch.Tensor | np.ndarray],
        gts: Sequence[torch.Tensor | np.ndarray],
        qids: torch.Tensor | Sequence[int],
    ) -> None:
        """``preds[i]`` ``[P, 4]``, ``gts[i]`` ``[G, 2]`` (seconds) and ``qids[i]`` of each query."""
        rows, ids = [], []
        for pred, gt, qid in zip(preds, gts, list(torch.as_tensor(qids).tolist()), strict=True):
            gt = np.asarray(torch.as_tensor(gt).detach().cpu(), dtype=np.float64).reshape(-1, 2)
            if len(gt) == 0:
                continue
            pred = np.asarray(torch.as_tensor(pred).detach().cpu(), dtype=np.float64).reshape(-1, 4)
            rows.append(self._per_query(pred, gt).mean(0))  # average over the tolerances
            ids.append(int(qid))
        if rows:
            self.values.append(torch.as_tensor(np.stack(rows), dtype=torch.float64, device=self.device))
            self.qids.append(torch.as_tensor(ids, dtype=torch.long, device=self.device))

    def _unique_rows(self) -> torch.Tensor:
        values = (
            self.values
            if isinstance(self.values, torch.Tensor)
            else (torch.cat(self.values) if self.values else None)
        )
        qids = (
            self.qids
            if isinstance(self.qids, torch.Tensor)
            else (torch.cat(self.qids) if self.qids else None)
        )
        if values is None or len(values) == 0:
            return torch.zeros((0, len(self.iou_thresholds)), dtype=torch.float64, device=self.device)
        unique, inverse = torch.unique(qids, return_inverse=True)
        first = torch.full((len(unique),), len(qids), dtype=torch.long, device=qids.device)
        first = first.scatter_reduce(0, inverse, torch.arange(len(qids), device=qids.device), reduce="amin")
        return values[first]

    def per_query(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(qids, rows)`` after de-duplication (for inspection and tests)."""
        qids = torch.cat(self.qids) if isinstance(self.qids, list) and self.qids else self.qids
        rows = self._unique_rows()
        return (torch.unique(qids) if len(rows) else torch.zeros(0, dtype=torch.long)), rows


class OnlineRecallAt1(_PerQueryMetric):
    """``oR@1,IoU=m`` (``online=True``, prefix ``oR1``) or offline ``R@1`` (prefix ``R1``)."""

    def __init__(
        self,
        iou_thresholds: Sequence[float] = (0.3, 0.5, 0.7),
        tolerances: Sequence[float] = (1.0, 3.0, 5.0),
        online: bool = True,
        **kwargs,
    ) -> None:
        super().__init__(iou_thresholds, tolerances, online, **kwargs)

    def _per_query(self, preds: np.ndarray, gts: np.ndarray) -> np.ndarray:
        return query_recall_at_1(preds, gts, self.iou_thresholds, self.tolerances)

    def compute(self) -> dict[str, torch.Tensor]:
        rows = self._unique_rows()
        prefix = "oR1" if self.online else "R1"
        mean = rows.mean(0) if len(rows) else torch.zeros(len(self.iou_thresholds), dtype=torch.float64)
        return {f"{prefix}@{m:g}": mean[i].float() for i, m in enumerate(self.iou_thresholds)}


class OnlineMeanAP(_PerQueryMetric):
    """``omAP`` at IoU 0.5, 0.75 and the mean over 0.5:0.05:0.95 (``online=False``: offline ``mAP``)."""

    def __init__(
        self,
        iou_thresholds: Sequence[float] = MAP_IOUS,
        tolerances: Sequence[float] = (1.0, 3.0, 5.0),
        online: bool = True,
        report: Sequence[float] = (0.5, 0.75),
        **kwargs,
    ) -> None:
        super().__init__(iou_thresholds, tolerances, online, **kwargs)
        self.report = tuple(float(m) for m in report)

    def _per_query(self, preds: np.ndarray, gts: np.ndarray) -> np.ndarray:
        return query_average_precision(preds, gts, self.iou_thresholds, self.tolerances)

    def compute(self) -> dict[str, torch.Tensor]:
        rows = self._unique_rows()
        prefix = "omAP" if self.online else "mAP"
        mean = rows.mean(0) if len(rows) else torch.zeros(len(self.iou_thresholds), dtype=torch.float64)
        out = {prefix: mean.mean().float()}
        for m in self.report:
            idx = min(range(len(self.iou_thresholds)), key=lambda i: abs(self.iou_thresholds[i] - m))
            out[f"{prefix}@{m:g}"] = mean[idx].float()
        return out
