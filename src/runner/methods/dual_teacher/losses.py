"""Distillation losses as plain functions of logits / features (card: "Baselines"; issue 3, item 4).

Each formula follows the reference implementations named in the card, so a number produced here
matches theirs for the same inputs:

* KD — Hinton et al. 2015; torchdistill ``KDLoss`` / mmrazor ``KLDivergence``:
  ``T² · KL(σ(z_t/T) ‖ σ(z_s/T))``, batch mean.
* DKD — Zhao et al., CVPR 2022; torchdistill ``DKDLoss`` / mmrazor ``DKDLoss``:
  ``α·TCKD + β·NCKD`` with the binary target/non-target KL and the non-target KL computed after
  masking the ground-truth logit with −1000, both scaled by ``T²``.
* DIST — Huang et al., NeurIPS 2022; torchdistill ``DISTLoss`` / mmrazor ``DISTLoss``:
  ``τ²·(β·(1 − mean_i ρ(y_s[i], y_t[i])) + γ·(1 − mean_c ρ(y_s[:,c], y_t[:,c])))`` with Pearson ρ on
  ``softmax(z/τ)``.
* RKD — Park et al., CVPR 2019; torchdistill ``RKDLoss``: smooth-L1 between mean-normalised pairwise
  Euclidean distances (``dist_factor``) and between cosines of the angles formed by triplets
  (``angle_factor``).
* OFA — Hao et al., NeurIPS 2023 (OFA-KD), as in the authors' code: target ``(p_t + 1_ĉ)^ε − 1_ĉ``
  (the ground-truth class's probability enhanced), cross-entropy with ``log p_s``.
* SDD MSE — card: ``MSE(SDB(f_s), f_res)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0
) -> torch.Tensor:
    """``T² · KL(σ(z_t/T) ‖ σ(z_s/T))`` averaged over the batch (torchdistill ``KDLoss``)."""
    t = float(temperature)
    log_p_s = F.log_softmax(student_logits / t, dim=1)
    log_p_t = F.log_softmax(teacher_logits / t, dim=1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * t * t


def dkd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    alpha: float = 1.0,
    beta: float = 8.0,
    temperature: float = 4.0,
) -> torch.Tensor:
    """Decoupled KD (torchdistill/mmrazor ``DKDLoss``; original repo defaults α=1, β=8, T=4).

    TCKD = KL([p_t^gt, 1−p_t^gt] ‖ [p_s^gt, 1−p_s^gt]); NCKD = KL over the non-target classes,
    computed as a softmax of the logits with the ground-truth entry lowered by 1000. Both ×T²,
    summed over classes and averaged over the batch.
    """
    t = float(temperature)
    gt = F.one_hot(labels, student_logits.shape[1]).to(student_logits.dtype)
    p_s = F.softmax(student_logits / t, dim=1)
    p_t = F.softmax(teacher_logits / t, dim=1)
    b_s = torch.stack([(p_s * gt).sum(1), (p_s * (1 - gt)).sum(1)], dim=1)
    b_t = torch.stack([(p_t * gt).sum(1), (p_t * (1 - gt)).sum(1)], dim=1)
    tckd = F.kl_div(torch.log(b_s.clamp_min(1e-12)), b_t, reduction="batchmean") * t * t
    log_p_s_nt = F.log_softmax(student_logits / t - 1000.0 * gt, dim=1)
    p_t_nt = F.softmax(teacher_logits / t - 1000.0 * gt, dim=1)
    nckd = F.kl_div(log_p_s_nt, p_t_nt, reduction="batchmean") * t * t
    return alpha * tckd + beta * nckd


def _pearson_rows(a: torch.Tensor, b: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Pearson correlation of each row of ``a`` with the same row of ``b``."""
    a = a - a.mean(dim=1, keepdim=True)
    b = b - b.mean(dim=1, keepdim=True)
    return F.cosine_similarity(a, b, dim=1, eps=eps)


def dist_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    beta: float = 1.0,
    gamma: float = 1.0,
    temperature: float = 1.0,
) -> torch.Tensor:
    """DIST (torchdistill/mmrazor ``DISTLoss``): inter-class relation (per sample, over classes) and
    intra-class relation (per class, over the batch), both ``1 − mean Pearson``, times ``τ²``."""
    t = float(temperature)
    y_s = F.softmax(student_logits / t, dim=1)
    y_t = F.softmax(teacher_logits / t, dim=1)
    inter = 1.0 - _pearson_rows(y_s, y_t).mean()
    intra = 1.0 - _pearson_rows(y_s.t(), y_t.t()).mean()
    return t * t * (beta * inter + gamma * intra)


def pairwise_distances(e: torch.Tensor, squared: bool = False, eps: float = 1e-12) -> torch.Tensor:
    """Euclidean distance matrix with a zero diagonal (torchdistill ``RKDLoss.pdist``)."""
    prod = e @ e.t()
    sq = prod.diag()
    res = (sq.unsqueeze(1) + sq.unsqueeze(0) - 2 * prod).clamp(min=eps)
    if not squared:
        res = res.sqrt()
    res = res.clone()
    idx = torch.arange(len(e), device=e.device)
    res[idx, idx] = 0
    return res


def _normalised_distances(e: torch.Tensor) -> torch.Tensor:
    d = pairwise_distances(e)
    positive = d[d > 0]
    return d / positive.mean() if positive.numel() else d


def _angles(e: torch.Tensor) -> torch.Tensor:
    diff = e.unsqueeze(0) - e.unsqueeze(1)  # [i, j] = e_j - e_i
    unit = F.normalize(diff, p=2, dim=2)
    return torch.bmm(unit, unit.transpose(1, 2)).reshape(-1)


def rkd_loss(
    student_features: torch.Tensor,
    teacher_features: torch.Tensor,
    dist_factor: float = 1.0,
    angle_factor: float = 2.0,
) -> torch.Tensor:
    """RKD-D + RKD-A (torchdistill ``RKDLoss``, its defaults ``dist_factor=1, angle_factor=2``).

    Features may have different widths: only relations inside the batch are compared. The teacher
    side carries no gradient."""
    s = student_features.flatten(1)
    t = teacher_features.flatten(1).detach()
    loss = s.new_zeros(())
    if dist_factor:
        loss = loss + dist_factor * F.smooth_l1_loss(_normalised_distances(s), _normalised_distances(t))
    if angle_factor:
        loss = loss + angle_factor * F.smooth_l1_loss(_angles(s), _angles(t))
    return loss


def ofa_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    eps: float = 1.0,
    temperature: float = 1.0,
) -> torch.Tensor:
    """OFA loss (Hao et al. 2023, Eq. 5 as implemented by the authors):
    ``−Σ_c ((p_t^c + 1[c=ĉ])^ε − 1[c=ĉ]) · log p_s^c``, batch mean (ε = 1 reduces to KD-CE + CE)."""
    t = float(temperature)
    p_t = F.softmax(teacher_logits / t, dim=1)
    log_p_s = F.log_softmax(student_logits / t, dim=1)
    gt = F.one_hot(labels, student_logits.shape[1]).to(p_t.dtype)
    target = (p_t + gt).pow(eps) - gt
    return -(target * log_p_s).sum(1).mean()


def sdd_mse(predicted_residual: torch.Tensor, residual_target: torch.Tensor) -> torch.Tensor:
    """``MSE(SDB(f_s), f_res)`` (card, "Reconstruction"): the target carries no gradient."""
    return F.mse_loss(predicted_residual, residual_target.detach())
