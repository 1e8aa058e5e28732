"""Teacher fusion: DATW (Discrepancy-Aware Teacher Weighting) and the plain average.

Card, "Confirmed": per sample, ``z_target = Σ_k w_k(x) · z_k(x)``; a teacher's weight rises with its
confidence (low softmax entropy) and with its discrepancy from the student; weights normalised.
Card, "Reconstruction" (config switches, this module's defaults):

    s_k = (1 − H(p_k) / log C) · d(z_s, z_k),   d ∈ {1 − cos(z_s, z_k), KL(p_k ‖ p_s)}
    w   = softmax_k(s / τ_w),                   student logits detached

``score`` selects the variant: ``confidence_x_discrepancy`` (the card), ``confidence`` or
``discrepancy`` alone (ablations). :class:`MeanFusion` is the averaged two-teacher target.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from runner.errors import invalid_value

DISCREPANCIES = ("cos", "kl")
SCORES = ("confidence_x_discrepancy", "confidence", "discrepancy")


def normalised_confidence(logits: torch.Tensor) -> torch.Tensor:
    """``1 − H(softmax(z)) / log C`` per sample: 1 for a one-hot prediction, 0 for a uniform one."""
    log_p = F.log_softmax(logits, dim=1)
    entropy = -(log_p.exp() * log_p).sum(1)
    return 1.0 - entropy / math.log(logits.shape[1])


def discrepancy(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, kind: str = "cos"
) -> torch.Tensor:
    """Per-sample disagreement of a teacher with the student: ``1 − cos`` of the logits, or ``KL(p_t ‖ p_s)``."""
    if kind == "cos":
        return 1.0 - F.cosine_similarity(student_logits, teacher_logits, dim=1)
    if kind == "kl":
        log_p_s = F.log_softmax(student_logits, dim=1)
        log_p_t = F.log_softmax(teacher_logits, dim=1)
        return (log_p_t.exp() * (log_p_t - log_p_s)).sum(1)
    raise invalid_value("distill.terms.kd.fusion.discrepancy", kind, f"one of {', '.join(DISCREPANCIES)}")


class DATW(nn.Module):
    """Per-sample teacher weights ``w = softmax(s / τ_w)`` (see the module docstring).

    Args:
        discrepancy: ``"cos"`` (1 − cosine of logits) or ``"kl"`` (KL(p_k ‖ p_s)).
        tau: the weighting temperature ``τ_w`` (0.5: the reconstruction's default, the same in
            ``conf/method/dual_teacher.yaml``; the paper gives none).
        score: ``confidence_x_discrepancy`` (card), ``confidence`` or ``discrepancy`` (ablations).
    """

    def __init__(self, discrepancy: str = "cos", tau: float = 0.5, score: str = "confidence_x_discrepancy"):
        super().__init__()
        if discrepancy not in DISCREPANCIES:
            raise invalid_value("fusion.discrepancy", discrepancy, f"one of {', '.join(DISCREPANCIES)}")
        if score not in SCORES:
            raise invalid_value("fusion.score", score, f"one of {', '.join(SCORES)}")
        if float(tau) <= 0:
            raise invalid_value("fusion.tau", tau, "a temperature > 0")
        self.discrepancy = discrepancy
        self.tau = float(tau)
        self.score = score

    def scores(self, student_logits: torch.Tensor, teacher_logits: list[torch.Tensor]) -> torch.Tensor:
        """``[B, K]`` scores ``s_k``; the student's logits are detached."""
        z_s = student_logits.detach()
        columns = []
        for z_k in teacher_logits:
            conf = normalised_confidence(z_k)
            disc = discrepancy(z_s, z_k, self.discrepancy)
            if self.score == "confidence":
                columns.append(conf)
            elif self.score == "discrepancy":
                columns.append(disc)
            else:
                columns.append(conf * disc)
        return torch.stack(columns, dim=1)

    def weights(self, student_logits: torch.Tensor, teacher_logits: list[torch.Tensor]) -> torch.Tensor:
        """``[B, K]`` teacher weights summing to 1 per sample."""
        return torch.softmax(self.scores(student_logits, teacher_logits) / self.tau, dim=1)

    def forward(
        self, student_logits: torch.Tensor, teacher_logits: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Fused target ``Σ_k w_k z_k`` ``[B, C]`` and the weights ``[B, K]``."""
        w = self.weights(student_logits, teacher_logits)
        fused = (torch.stack(teacher_logits, dim=1) * w.unsqueeze(-1)).sum(1)
        return fused, w


class MeanFusion(nn.Module):
    """Equal weights: the averaged multi-teacher target (and the single-teacher case, K = 1)."""

    def forward(
        self, student_logits: torch.Tensor, teacher_logits: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        stacked = torch.stack(teacher_logits, dim=1)
        w = stacked.new_full(stacked.shape[:2], 1.0 / stacked.shape[1])
        return stacked.mean(1), w
