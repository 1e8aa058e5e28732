"""OVG-HQ-Unify losses (card ``ovg_hq.md``, "Losses" and "Read from the official code").

* :func:`focal_loss`: 2-way (foreground, background) softmax focal loss, α = 0.9 for foreground and
  0.1 for background, γ = 2, mean over all anchors (weighted ×10 by the method);
* :func:`span_l1`: L1 on (Δo, Δl) over positive anchors (×1);
* :func:`distillation_loss`: the mean of four terms between the frozen segment+text expert and the
  student — KL on the fg/bg logits at temperature T, MSE on spans, MSE on the decoder states of
  layers 0 and 1 (×0.4 by the method). ``kl_form="correct"`` is ``KL(softmax(z_e/T) ‖ softmax(z_s/T))``;
  ``kl_form="code"`` reproduces the official code, which applies softmax twice
  (``KL(softmax(softmax(z_e/T)) ‖ softmax(softmax(z_s/T)))``, nearly flat). No ``T²`` factor (the card
  names none).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

KL_FORMS = ("correct", "code")


def focal_loss(
    logits: torch.Tensor, positive: torch.Tensor, alpha: float = 0.9, gamma: float = 2.0
) -> torch.Tensor:
    """``logits [..., 2]`` (fg, bg), ``positive [...]`` bool → mean focal loss over every anchor."""
    log_p = F.log_softmax(logits.float(), dim=-1)
    target = torch.where(positive, 0, 1).long()
    log_pt = log_p.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    weight = torch.where(positive, alpha, 1.0 - alpha)
    return (-weight * (1.0 - log_pt.exp()).pow(gamma) * log_pt).mean()


def span_l1(spans: torch.Tensor, targets: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """Mean over positive anchors of ``|Δo − Δo*| + |Δl − Δl*|`` (0 when there is none)."""
    if not bool(positive.any()):
        return spans.sum() * 0.0
    return (spans[positive].float() - targets[positive].float()).abs().sum(-1).mean()


def kl_divergence(
    student: torch.Tensor, expert: torch.Tensor, temperature: float, form: str = "correct"
) -> torch.Tensor:
    """Mean over anchors of ``KL(p_expert ‖ p_student)`` on 2-way logits at ``temperature``."""
    if form not in KL_FORMS:
        raise ValueError(f"kl_form={form!r}: one of {', '.join(KL_FORMS)}")
    s, e = student.float() / temperature, expert.float() / temperature
    if form == "code":  # softmax applied twice, as the official implementation does
        s, e = F.softmax(s, dim=-1), F.softmax(e, dim=-1)
    log_ps, log_pe = F.log_softmax(s, dim=-1), F.log_softmax(e, dim=-1)
    return (log_pe.exp() * (log_pe - log_ps)).sum(-1).mean()


def distillation_loss(
    student: dict[str, torch.Tensor],
    expert: dict[str, torch.Tensor],
    temperature: float = 2.0,
    kl_form: str = "correct",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Mean of (logit KL, span MSE, decoder-state MSE per layer); returns ``(loss, terms)``."""
    terms = {
        "kl": kl_divergence(student["logits"], expert["logits"].detach(), temperature, kl_form),
        "span_mse": F.mse_loss(student["spans"].float(), expert["spans"].detach().float()),
    }
    for layer in range(student["states"].shape[2]):
        terms[f"state{layer}_mse"] = F.mse_loss(
            student["states"][:, :, layer].float(), expert["states"][:, :, layer].detach().float()
        )
    return torch.stack(list(terms.values())).mean(), terms
