"""MOON (Li, He & Song, CVPR 2021): model-contrastive federated learning.

Local objective (MOON eq. 3–4)::

    CE(f(x), y) + μ · mean_b −log[ e^{cos(z, z_glob)/τ} / (e^{cos(z, z_glob)/τ} + e^{cos(z, z_prev)/τ}) ]

with ``z`` the representation (here the classifier's input ``h``; MOON adds a projection head, which
FedPall's comparison code does not), ``z_glob`` that of the round's global model and ``z_prev`` that
of the client's own model after its previous local training (persistent client state ``previous``;
before a client has trained, the initial model). Both are fixed (no gradient). Aggregation:
FedAvg's data-size weighted mean; evaluation: the global model.

Defaults μ = 1, τ = 0.5 (MOON's paper; FedPall's code runs τ = 1, μ = ``ld`` = 1).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from runner.errors import invalid_value
from runner.federated.simulator import LocalResult, LocalTask
from runner.federated.strategy import RoundPlan, Strategy

__all__ = ["MOON", "model_contrastive_loss", "moon_objective"]


def model_contrastive_loss(
    z: torch.Tensor, z_global: torch.Tensor, z_previous: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Mean over the batch of MOON's ``ℓ_con`` (module docstring), cosine similarity along dim -1."""
    positive = F.cosine_similarity(z, z_global, dim=-1) / temperature
    negative = F.cosine_similarity(z, z_previous, dim=-1) / temperature
    return -(positive - torch.logaddexp(positive, negative)).mean()


def moon_objective(mu: float, temperature: float):
    """``CE + μ ℓ_con`` with the global and previous models' flat parameters in the client's context."""

    def objective(forward, flat, x, y, context) -> torch.Tensor:
        logits, z = forward(flat, x, return_features=True)
        loss = F.cross_entropy(logits, y)
        if mu == 0:
            return loss
        z_global = forward(context["global"], x, return_features=True)[1].detach()
        z_previous = forward(context["previous"], x, return_features=True)[1].detach()
        return loss + mu * model_contrastive_loss(z, z_global, z_previous, temperature)

    return objective


class MOON(Strategy):
    """FedAvg with MOON's model-contrastive local term (module docstring).

    Args:
        mu: weight μ of the contrastive term.
        temperature: τ.
        **base: :class:`~runner.federated.strategy.Strategy` arguments.
    """

    def __init__(self, mu: float = 1.0, temperature: float = 0.5, **base: Any) -> None:
        super().__init__(**base)
        if float(mu) < 0:
            raise invalid_value("fl_strategy.mu", mu, "a number >= 0")
        if float(temperature) <= 0:
            raise invalid_value("fl_strategy.temperature", temperature, "a number > 0")
        self.mu = float(mu)
        self.temperature = float(temperature)

    def setup(self, num_clients, initial, personal_mask, seed) -> None:
        super().setup(num_clients, initial, personal_mask, seed)
        self.state.add("previous", tuple(initial.shape), initial, dtype=initial.dtype)

    def configure_local(self, module, plan: RoundPlan, rows: torch.Tensor) -> LocalTask:
        clients = plan.clients[rows]
        previous = self.state.get("previous", clients.to(self.state.previous.device))
        return LocalTask(
            objective=moon_objective(self.mu, self.temperature),
            context={"global": plan.start[rows], "previous": previous.to(plan.start.dtype)},
        )

    def client_messages(self, plan, rows, pseudo_grads, result: LocalResult | None = None):
        clients = plan.clients[rows]
        final = plan.start[rows] - self.local_lr * pseudo_grads if result is None else result.final
        self.state.set("previous", clients.to(self.state.previous.device), final)
        return super().client_messages(plan, rows, pseudo_grads, result)
