"""Shared evaluation of online grounding modules: query conditions, emission → NMS → online metrics.

A *condition* names the query streams a model receives (card: the eight evaluation conditions
``text, image_r, image_r+text, image_c+text_c, image_g, image_g+text, segment_g, segment_g+text``);
training additionally uses ``hybrid`` (the per-sample drawn visual query + its text), ``visual`` (the
drawn visual query alone). Every condition of ``val_conditions`` / ``test_conditions`` is evaluated
on the same whole-video batches and logged as ``<stage>/<condition>/<metric>`` with the online
metrics (``oR1@{0.3,0.5,0.7}``, ``omAP@0.5``, ``omAP@0.75``, ``omAP``) and the offline ones (``R1@…``,
``mAP…``) of :mod:`runner.metrics.online_grounding`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy as np
from torch import nn

from runner.errors import invalid_value
from runner.metrics.online_grounding import OnlineMeanAP, OnlineRecallAt1

from .emission import finalize
from .network import QueryInput

EIGHT_CONDITIONS = (
    "text",
    "image_r",
    "image_r+text",
    "image_c+text_c",
    "image_g",
    "image_g+text",
    "segment_g",
    "segment_g+text",
)
VISUAL = ("image_r", "image_c", "image_g", "segment_g")
TEXTS = ("text", "text_c")
TRAINING_MODES = ("hybrid", "visual")


def check_condition(condition: str, key: str) -> str:
    parts = condition.split("+")
    ok = condition in TRAINING_MODES or (
        1 <= len(parts) <= 2
        and sum(p in VISUAL for p in parts) <= 1
        and sum(p in TEXTS for p in parts) <= 1
        and all(p in VISUAL or p in TEXTS for p in parts)
    )
    if not ok:
        raise invalid_value(
            key, condition, f"hybrid, visual, or one of {', '.join(VISUAL + TEXTS)} / visual+text"
        )
    return condition


def query_from_batch(batch: dict[str, Any], condition: str) -> QueryInput:
    """The query streams of ``condition`` from a batch (see the module docstring)."""
    if condition == "hybrid":
        return QueryInput(
            batch["hybrid_text"], batch["hybrid_text_mask"], batch["visual"], batch["visual_mask"]
        )
    if condition == "visual":
        return QueryInput(visual=batch["visual"], visual_mask=batch["visual_mask"])
    parts = condition.split("+")
    text = next((p for p in parts if p in TEXTS), None)
    visual = next((p for p in parts if p in VISUAL), None)
    return QueryInput(
        text=None if text is None else batch[text],
        text_mask=None if text is None else batch[f"{text}_mask"],
        visual=None if visual is None else batch[visual],
        visual_mask=None if visual is None else batch[f"{visual}_mask"],
    )


def condition_key(condition: str) -> str:
    """A ModuleDict-safe key of a condition name."""
    return condition.replace("+", "__")


class OnlineGroundingEvaluation(L.LightningModule):
    """Base of the grounding modules: per-condition metrics on whole-video val/test batches.

    Subclasses implement :meth:`emissions` (``condition``, batch → per-query ``[P, 4]`` emissions).
    """

    def _init_evaluation(
        self,
        val_conditions: Sequence[str],
        test_conditions: Sequence[str],
        tolerances: Sequence[float],
        nms_iou: float,
    ) -> None:
        self.val_conditions = [check_condition(c, "method.val_conditions") for c in val_conditions]
        self.test_conditions = [check_condition(c, "method.test_conditions") for c in test_conditions]
        self.nms_iou = float(nms_iou)
        tolerances = [float(t) for t in tolerances]

        def metric_set() -> nn.ModuleDict:
            return nn.ModuleDict(
                {
                    "online_r1": OnlineRecallAt1(tolerances=tolerances, online=True),
                    "online_map": OnlineMeanAP(tolerances=tolerances, online=True),
                    "offline_r1": OnlineRecallAt1(tolerances=tolerances, online=False),
                    "offline_map": OnlineMeanAP(tolerances=tolerances, online=False),
                }
            )

        self.eval_metrics = nn.ModuleDict(
            {
                "val": nn.ModuleDict({condition_key(c): metric_set() for c in self.val_conditions}),
                "test": nn.ModuleDict({condition_key(c): metric_set() for c in self.test_conditions}),
            }
        )

    def emissions(self, batch: dict[str, Any], condition: str) -> list[np.ndarray]:
        raise NotImplementedError

    def predictions(self, batch: dict[str, Any], condition: str) -> list[np.ndarray]:
        """Per query: the video-level NMS'ed predictions ``[P, 4]`` (``[[0, 0, 0, 0]]`` if none)."""
        return [finalize(e, self.nms_iou) for e in self.emissions(batch, condition)]

    def _eval_step(self, batch: dict[str, Any], stage: str) -> None:
        conditions = self.val_conditions if stage == "val" else self.test_conditions
        gts = [batch["gt"][i, : int(batch["gt_count"][i])] for i in range(len(batch["qid"]))]
        for condition in conditions:
            preds = self.predictions(batch, condition)
            for metric in self.eval_metrics[stage][condition_key(condition)].values():
                metric.update(preds, gts, batch["qid"])

    def _log_eval(self, stage: str) -> None:
        conditions = self.val_conditions if stage == "val" else self.test_conditions
        for condition in conditions:
            for metric in self.eval_metrics[stage][condition_key(condition)].values():
                for name, value in metric.compute().items():
                    self.log(f"{stage}/{condition}/{name}", value, sync_dist=False)
                metric.reset()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_eval("val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self._log_eval("test")
