"""The server's Nesterov step in the card's form (``y_k`` look-ahead, ``x_{k+1} = y_k − η G_k``)."""

from __future__ import annotations

import torch

__all__ = ["LookaheadNesterov"]


class LookaheadNesterov(torch.optim.Optimizer):
    """Nesterov's accelerated step written as in the Byrd-NAFL card:

    ``x_{k+1} = y_k − η G_k`` and ``y_{k+1} = x_{k+1} + β (x_{k+1} − x_k)``,

    where ``G_k`` (the parameters' ``.grad``) is the robust aggregate of gradients computed at
    ``y_k``. The parameters hold the look-ahead point ``y`` (what clients receive and what is
    evaluated); ``state["x"]`` holds ``x_k``. With a constant η this is the same sequence as
    ``torch.optim.SGD(momentum=β, nesterov=True)`` (Sutskever et al. 2013's reformulation; tested).
    """

    def __init__(self, params, lr: float, beta: float = 0.9) -> None:
        if lr <= 0 or not 0 <= beta < 1:
            raise ValueError(f"need lr > 0 and 0 <= beta < 1, got lr={lr}, beta={beta}")
        super().__init__(params, {"lr": lr, "beta": beta})

    @torch.no_grad()
    def step(self, closure=None):
        loss = closure() if closure is not None else None
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "x" not in state:
                    state["x"] = p.detach().clone()  # x_0 = y_0
                x_next = p - group["lr"] * p.grad
                p.copy_(x_next + group["beta"] * (x_next - state["x"]))
                state["x"] = x_next
        return loss
