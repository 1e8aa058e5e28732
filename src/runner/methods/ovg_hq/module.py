"""OVG-HQ-Unify training (card ``ovg_hq.md``, "Losses"; issue 11, item 4).

    L = 10·focal(α 0.9, γ 2) + 1·L1(Δo, Δl on positives) + 0.4·distill(student, frozen expert)

The student sees the query condition ``modality_cycle[batch_idx % len(modality_cycle)]`` (the code's
``hybrid / visual / text`` cycle; the visual query is drawn per sample by the data module). The expert
is the same architecture trained on ``segment_g+text`` queries (:mod:`.expert`): loaded from
``distill.expert_checkpoint`` or, when that is null, trained first with this module (no distillation,
its own recipe) and cached by hash; a nested training honours the run's debug mode. It sees the same
video with the segment+text query and is frozen (eval mode, no gradients, not in this module's
checkpoint). Model selection uses the val text-only ``oR@1,IoU=0.5`` (``optimized_metric``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from runner.errors import invalid_value

from .emission import emit
from .evaluation import EIGHT_CONDITIONS, OnlineGroundingEvaluation, check_condition, query_from_batch
from .losses import KL_FORMS, distillation_loss, focal_loss, span_l1
from .network import OVGHQNet

log = logging.getLogger(__name__)

LOSS_DEFAULTS = {"focal_alpha": 0.9, "focal_gamma": 2.0, "cls_weight": 10.0, "reg_weight": 1.0}
DISTILL_DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "weight": 0.4,
    "temperature": 2.0,
    "kl_form": "correct",
    "expert_condition": "segment_g+text",
    "expert_checkpoint": None,
    "expert_training": {"max_epochs": 30, "seed": 0, "cache_dir": "ovg_hq_experts"},
}
EMISSION_DEFAULTS = {"threshold": 0.5, "nms_iou": 0.1, "max_time": 150.0}


class OVGHQModule(OnlineGroundingEvaluation):
    """Train an :class:`OVGHQNet` for online grounding; evaluate per query condition.

    Args:
        net: the network (``model`` group).
        optimizer / scheduler: partial constructors (AdamW 1e-4, wd 1e-4; constant lr).
        anchors, clip_seconds, window: from the data module.
        modality_cycle: conditions cycled over training batches (default hybrid, visual, text).
        loss: ``focal_alpha``, ``focal_gamma``, ``cls_weight`` (10), ``reg_weight`` (1).
        distill: ``enabled``, ``weight`` (0.4), ``temperature`` (2), ``kl_form`` (correct | code),
            ``expert_condition`` (segment_g+text), ``expert_checkpoint`` (a local file or null: train
            it), ``expert_training`` (``max_epochs``, ``seed``, ``cache_dir``, ``optimizer``,
            ``batch_size``...).
        emission: ``threshold`` (0.5), ``nms_iou`` (0.1), ``max_time`` (150 s).
        val_conditions / test_conditions / tolerances: what is evaluated (:mod:`.evaluation`).
    """

    def __init__(
        self,
        net: OVGHQNet,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        anchors: Sequence[int] = (1, 2, 4, 8),
        clip_seconds: float = 2.0,
        window: int = 16,
        modality_cycle: Sequence[str] = ("hybrid", "visual", "text"),
        loss: Mapping[str, float] | None = None,
        distill: Mapping[str, Any] | None = None,
        emission: Mapping[str, float] | None = None,
        val_conditions: Sequence[str] = ("text",),
        test_conditions: Sequence[str] = EIGHT_CONDITIONS,
        tolerances: Sequence[float] = (1.0, 3.0, 5.0),
    ) -> None:
        super().__init__()
        self.net = net
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.register_buffer("anchor_lengths", torch.tensor([float(a) for a in anchors]), persistent=False)
        self.clip_seconds, self.window = float(clip_seconds), int(window)
        self.modality_cycle = [check_condition(c, "method.modality_cycle") for c in modality_cycle]
        if not self.modality_cycle:
            raise invalid_value("method.modality_cycle", [], "at least one query condition")
        self.loss_cfg = {**LOSS_DEFAULTS, **dict(loss or {})}
        self.distill_cfg = {**DISTILL_DEFAULTS, **dict(distill or {})}
        self.distill_cfg["expert_training"] = {
            **DISTILL_DEFAULTS["expert_training"],
            **dict(self.distill_cfg.get("expert_training") or {}),
        }
        if self.distill_cfg["kl_form"] not in KL_FORMS:
            raise invalid_value(
                "method.distill.kl_form", self.distill_cfg["kl_form"], "one of " + ", ".join(KL_FORMS)
            )
        check_condition(self.distill_cfg["expert_condition"], "method.distill.expert_condition")
        self.emission_cfg = {**EMISSION_DEFAULTS, **dict(emission or {})}
        self._init_evaluation(val_conditions, test_conditions, tolerances, self.emission_cfg["nms_iou"])
        self._expert: list[OVGHQNet] = []  # a list: the frozen expert is not a registered sub-module
        self.expert_source: dict[str, Any] = {}
        self.save_hyperparameters(
            {
                "modality_cycle": self.modality_cycle,
                "loss": self.loss_cfg,
                "distill": {k: v for k, v in self.distill_cfg.items() if k != "expert_training"},
                "emission": self.emission_cfg,
                "net": net.describe() if hasattr(net, "describe") else type(net).__name__,
            }
        )

    # ------------------------------------------------------------------ expert
    @property
    def expert(self) -> OVGHQNet | None:
        return self._expert[0] if self._expert else None

    def setup(self, stage: str) -> None:
        if stage != "fit" or not self.distill_cfg["enabled"] or self._expert:
            return
        from .expert import load_or_train_expert

        datamodule = getattr(self.trainer, "datamodule", None)
        expert, source = load_or_train_expert(self.net, self.distill_cfg, datamodule, self.trainer, self)
        expert.requires_grad_(False).eval()
        self._expert = [expert]
        self.expert_source = source

    def on_fit_start(self) -> None:
        if self.expert is not None:
            self.expert.to(self.device).eval()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["ovg_hq_expert"] = dict(self.expert_source)

    # ------------------------------------------------------------------ training
    def configure_optimizers(self):
        optimizer = self.optimizer_factory(self.net.parameters())
        if self.scheduler_factory is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": self.scheduler_factory(optimizer)}

    def forward_condition(
        self, net: OVGHQNet, batch: dict[str, Any], condition: str, **kwargs: Any
    ) -> dict[str, Any]:
        return net(batch["video"], query_from_batch(batch, condition), valid=batch.get("valid"), **kwargs)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        condition = self.modality_cycle[batch_idx % len(self.modality_cycle)]
        window_args = {"first_window": batch["first_window"], "num_windows": batch["positive"].shape[1]}
        out = self.forward_condition(self.net, batch, condition, **window_args)
        positive, cfg = batch["positive"], self.loss_cfg
        terms = {
            "focal": focal_loss(out["logits"], positive, cfg["focal_alpha"], cfg["focal_gamma"]),
            "l1": span_l1(out["spans"], batch["targets"], positive),
        }
        total = cfg["cls_weight"] * terms["focal"] + cfg["reg_weight"] * terms["l1"]
        if self.expert is not None:
            with torch.no_grad():
                expert_out = self.forward_condition(
                    self.expert, batch, self.distill_cfg["expert_condition"], **window_args
                )
            distill, parts = distillation_loss(
                out, expert_out, self.distill_cfg["temperature"], self.distill_cfg["kl_form"]
            )
            terms["distill"] = distill
            total = total + self.distill_cfg["weight"] * distill
            for name, value in parts.items():
                self.log(
                    f"train/distill_{name}",
                    value.detach(),
                    on_step=False,
                    on_epoch=True,
                    batch_size=len(positive),
                )
        n = len(positive)
        self.log("train/loss", total, on_step=True, on_epoch=True, prog_bar=True, batch_size=n)
        for name, value in terms.items():
            self.log(f"train/loss_{name}", value.detach(), on_step=False, on_epoch=True, batch_size=n)
        return {"loss": total, "loss_terms": {k: v.detach() for k, v in terms.items()}}

    # ------------------------------------------------------------------ evaluation
    def emissions(self, batch: dict[str, Any], condition: str) -> list[np.ndarray]:
        out = self.forward_condition(self.net, batch, condition)
        cfg = self.emission_cfg
        return [
            emit(
                out["logits"][i, : int(n)],
                out["spans"][i, : int(n)],
                self.anchor_lengths,
                1,
                self.clip_seconds,
                cfg["threshold"],
                cfg["max_time"],
            )
            for i, n in enumerate(batch["num_clips"].tolist())
        ]
