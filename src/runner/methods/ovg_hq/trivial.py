"""Trivial online-grounding baselines (issue 11: "the most frequent moment length ending at the current
clip, and a random one"), evaluated by exactly the pipeline of the learned model (NMS, clipping,
online metrics).

At every clip boundary ``t`` the baseline emits one window ending at ``t`` with a random score (so that
which emission survives as top-1 is chance, not position): ``mode=frequent`` uses the most frequent GT
length of the training split (clip units, from the data module); ``mode=random`` draws the length
uniformly from ``1..max_length`` clips. Scores are seeded per query id, so a run is deterministic.
Nothing is learned: the training epoch does nothing.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from runner.errors import invalid_value

from .evaluation import EIGHT_CONDITIONS, OnlineGroundingEvaluation

MODES = ("frequent", "random")


class TrivialGrounder(OnlineGroundingEvaluation):
    """See the module docstring. ``net`` (the experiment's model group) and the learned method's
    settings an experiment sets (``optimizer``, ``distill``, ...) are accepted and ignored, so that
    ``method=ovg_hq_trivial`` works in any OVG-HQ experiment."""

    def __init__(
        self,
        mode: str = "frequent",
        frequent_length: int = 1,
        max_length: int = 30,
        clip_seconds: float = 2.0,
        max_time: float = 150.0,
        nms_iou: float = 0.1,
        seed: int = 0,
        val_conditions: Sequence[str] = ("text",),
        test_conditions: Sequence[str] = EIGHT_CONDITIONS,
        tolerances: Sequence[float] = (1.0, 3.0, 5.0),
        net: Any = None,
        **learned_method_settings: Any,
    ) -> None:
        super().__init__()
        if mode not in MODES:
            raise invalid_value("method.mode", mode, "one of " + ", ".join(MODES))
        self.mode, self.frequent_length, self.max_length = mode, max(1, int(frequent_length)), int(max_length)
        self.clip_seconds, self.max_time, self.seed = float(clip_seconds), float(max_time), int(seed)
        self._init_evaluation(val_conditions, test_conditions, tolerances, nms_iou)
        self.save_hyperparameters({"mode": mode, "frequent_length": self.frequent_length})

    def configure_optimizers(self):
        return None  # nothing to learn

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        return None

    def emissions(self, batch: dict[str, Any], condition: str) -> list[np.ndarray]:
        out = []
        for qid, n in zip(batch["qid"].tolist(), batch["num_clips"].tolist(), strict=True):
            rng = np.random.default_rng([self.seed, int(qid), zlib.crc32(condition.encode())])
            t = np.arange(1, int(n) + 1, dtype=np.float64)
            if self.mode == "frequent":
                length = np.full_like(t, float(self.frequent_length))
            else:
                length = rng.integers(1, self.max_length + 1, size=len(t)).astype(np.float64)
            rows = np.stack(
                [
                    (t - length) * self.clip_seconds,
                    t * self.clip_seconds,
                    rng.random(len(t)),
                    t * self.clip_seconds,
                ],
                1,
            )
            rows[:, :2] = np.clip(rows[:, :2], 0.0, self.max_time)
            out.append(rows)
        return out
