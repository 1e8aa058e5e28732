"""FedProx (Li et al., MLSys 2020, eq. 2): local objective ``f_i(θ) + μ/2 ‖θ − θᵗ‖²``.

Each client minimises its loss plus a proximal term to the round's start point ``θᵗ`` (the global
model, or the global shared coordinates plus the client's personal ones); aggregation is FedAvg's
data-size weighted mean. ``μ = 0`` is FedAvg exactly.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from runner.errors import invalid_value
from runner.federated.simulator import LocalTask
from runner.federated.strategy import RoundPlan, Strategy

__all__ = ["FedProx", "proximal_objective"]


def proximal_objective(mu: float):
    """``CE(f(θ; x), y) + μ/2 ‖θ − anchor‖²`` with the anchor in the client's context."""

    def objective(forward, flat, x, y, context) -> torch.Tensor:
        return F.cross_entropy(forward(flat, x), y) + 0.5 * mu * (flat - context["anchor"]).pow(2).sum()

    return objective


class FedProx(Strategy):
    """FedAvg with the proximal local term (module docstring).

    Args:
        mu: proximal coefficient μ (FedProx's grid: 0.001, 0.01, 0.1, 1).
        **base: :class:`~runner.federated.strategy.Strategy` arguments.
    """

    def __init__(self, mu: float = 0.01, **base: Any) -> None:
        super().__init__(**base)
        if float(mu) < 0:
            raise invalid_value("fl_strategy.mu", mu, "a number >= 0")
        self.mu = float(mu)

    def configure_local(self, module, plan: RoundPlan, rows: torch.Tensor) -> LocalTask:
        return LocalTask(objective=proximal_objective(self.mu), context={"anchor": plan.start[rows]})
