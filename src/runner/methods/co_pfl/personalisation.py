"""PWPM (parameter-wise personalisation masks) and MAMO (mask-aware momentum) of CO-PFL.

Card ``co_pfl.md``. Confirmed: a per-parameter mask keeps client-specific parameters under a
capacity budget (personalisation rate p, budget r); the server update uses w ∘ m (shared entries
only); MAMO keeps separate Adam-style first and second moments with bias correction for the shared
and the personal parameters. Reconstructed (FedSelect-style, switches in the strategy):

* :func:`grow_personal_mask` — after local training, among a tensor's still-shared entries the
  top-p fraction by ``|θ_after − θ_before|`` becomes personal, until the personal fraction of the
  tensor reaches the budget r;
* :func:`masked_weighted_average` — every entry averaged over the clients that still share it,
  weighted by α; an entry no client shares keeps the previous global value;
* :class:`MaskAwareAdam` — Adam moments and step counts kept separately for the shared and the
  personal coordinates; an update of one group never touches the other group's moments, and the
  shared group's moments can be reset when the server overwrites the shared entries.
"""

from __future__ import annotations

import torch


def grow_personal_mask(
    personal: torch.Tensor, delta: torch.Tensor, rate: float, budget: float
) -> torch.Tensor:
    """New personal mask (bool, same shape) after one round of growth (module docstring)."""
    flat_personal = personal.flatten().clone()
    n = flat_personal.numel()
    capacity = int(budget * n) - int(flat_personal.sum())
    shared_idx = torch.nonzero(~flat_personal).flatten()
    grow = min(int(round(rate * shared_idx.numel())), max(capacity, 0))
    if grow > 0:
        magnitude = delta.flatten().abs()[shared_idx]
        flat_personal[shared_idx[torch.topk(magnitude, grow).indices]] = True
    return flat_personal.view_as(personal)


def masked_weighted_average(
    client_params: torch.Tensor,
    personal_masks: torch.Tensor,
    weights: torch.Tensor,
    previous_global: torch.Tensor,
) -> torch.Tensor:
    """Global ``[d]`` from ``[n, d]`` client parameters, averaging each entry over its sharers."""
    share = (~personal_masks).to(client_params.dtype) * weights.to(client_params.dtype)[:, None]
    total = share.sum(0)
    averaged = (share * client_params).sum(0) / total.clamp_min(1e-12)
    return torch.where(total > 0, averaged, previous_global)


class MaskAwareAdam:
    """Adam with one set of moments (and step count) per coordinate group: shared vs personal."""

    def __init__(
        self,
        shape: torch.Size | tuple[int, ...],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        device=None,
    ) -> None:
        self.lr, self.betas, self.eps = lr, betas, eps
        zeros = lambda: torch.zeros(shape, device=device)  # noqa: E731
        self.moments = {group: {"m": zeros(), "v": zeros(), "t": 0} for group in ("shared", "personal")}

    def reset(self, group: str) -> None:
        """Forget a group's moments (e.g. the shared ones after the server overwrote those entries)."""
        state = self.moments[group]
        state["m"].zero_()
        state["v"].zero_()
        state["t"] = 0

    @torch.no_grad()
    def step(self, param: torch.Tensor, grad: torch.Tensor, personal: torch.Tensor) -> None:
        """Update ``param`` in place; each group's moments change only at that group's coordinates."""
        beta1, beta2 = self.betas
        for group, members in (("shared", ~personal), ("personal", personal)):
            if not bool(members.any()):
                continue
            state = self.moments[group]
            state["t"] += 1
            m, v = state["m"], state["v"]
            m[members] = beta1 * m[members] + (1 - beta1) * grad[members]
            v[members] = beta2 * v[members] + (1 - beta2) * grad[members] ** 2
            m_hat = m[members] / (1 - beta1 ** state["t"])
            v_hat = v[members] / (1 - beta2 ** state["t"])
            param[members] -= self.lr * m_hat / (v_hat.sqrt() + self.eps)
