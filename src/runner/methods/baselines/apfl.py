"""APFL (Deng et al., 2020, Algorithm 1; the formula as in PFLlib's ``clientapfl``).

Every client keeps a personal model ``v`` and a mixing weight ``α`` (client state ``v`` and
``alpha``); its personalised model is the mixture ``v̄ = α v + (1 − α) w``. In each local step, on one
minibatch,

* ``w ← w − η ∇f(w)``                       (the local copy of the global model, averaged as FedAvg),
* ``v ← v − η ∇_v f(v̄) = v − η α ∇f(v̄)``,
* ``α ← clip(α − η_α ⟨v − w, ∇f(v̄)⟩, 0, 1)``  (learned; ``alpha_lr = 0`` keeps α fixed at ``alpha``).

Engine mapping: the local parameter row is ``[w, v, α]`` (length 2d + 1) and the objective is
``f(w) + f(α v + (1 − α) sg(w))`` (``sg`` = stop-gradient), whose gradient is exactly the three
updates above; the step applies η to ``w, v`` and η_α (then the clip) to α. ``configure_local``
widens ``plan.start`` to these rows; ``client_messages`` keeps ``v, α`` and sends ``w``'s
pseudo-gradient. PFLlib's extra ``0.01 α`` term in α's gradient is left out (not in the paper's
Algorithm 1). The personalised evaluation mixes the client's ``v`` with the current global model.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from runner.errors import invalid_value
from runner.federated.simulator import LocalTask
from runner.federated.strategy import RoundPlan, Strategy

__all__ = ["APFL", "apfl_objective", "apfl_step"]


def apfl_objective(forward, flat, x, y, context) -> torch.Tensor:
    """``f(w) + f(α v + (1 − α) sg(w))`` on the row ``[w, v, α]``."""
    d = (flat.shape[-1] - 1) // 2
    w, v, alpha = flat[:d], flat[d : 2 * d], flat[2 * d]
    mixed = alpha * v + (1 - alpha) * w.detach()
    return F.cross_entropy(forward(w, x), y) + F.cross_entropy(forward(mixed, x), y)


def apfl_step(lr: float, alpha_lr: float, weight_decay: float = 0.0):
    """SGD on ``[w, v]`` with ``lr`` (+ L2), on α with ``alpha_lr`` then clipped to [0, 1]."""

    def step(params, grads, state, s):
        models, alpha = params[:, :-1], params[:, -1:]
        g_models, g_alpha = grads[:, :-1], grads[:, -1:]
        if weight_decay:
            g_models = g_models + weight_decay * models
        models = models - lr * g_models
        alpha = (alpha - alpha_lr * g_alpha).clamp(0.0, 1.0)
        return torch.cat([models, alpha], dim=1), state

    return step


class APFL(Strategy):
    """APFL: adaptive mixture of a personal and the global model (module docstring).

    Args:
        alpha: initial (or, with ``alpha_lr = 0``, fixed) mixing weight α (0.25: from the paper's grid
            {0.25, 0.5, 0.75}; PFLlib starts at 1.0).
        alpha_lr: step size of α (0 = fixed α; default: learned with ``local_lr``).
        **base: :class:`~runner.federated.strategy.Strategy` arguments.
    """

    def __init__(self, alpha: float = 0.25, alpha_lr: float | None = None, **base: Any) -> None:
        super().__init__(**base)
        if not 0.0 <= float(alpha) <= 1.0:
            raise invalid_value("fl_strategy.alpha", alpha, "a number in [0, 1]")
        if self.personal_parameters:
            raise invalid_value("fl_strategy.personal_parameters", self.personal_parameters, "[] for APFL")
        self.alpha = float(alpha)
        self.alpha_lr = self.local_lr if alpha_lr is None else float(alpha_lr)
        if self.alpha_lr < 0:
            raise invalid_value("fl_strategy.alpha_lr", alpha_lr, "a number >= 0")

    def setup(self, num_clients, initial, personal_mask, seed) -> None:
        super().setup(num_clients, initial, personal_mask, seed)
        self.state.add("v", (initial.numel(),), initial)
        self.state.add("alpha", (1,), self.alpha)

    def configure_local(self, module, plan: RoundPlan, rows: torch.Tensor) -> LocalTask:
        v = self.state.get("v", plan.clients).to(plan.start.dtype)
        alpha = self.state.get("alpha", plan.clients).to(plan.start.dtype)
        plan.start = torch.cat([plan.start, v, alpha], dim=1)  # the local rows [w, v, α]
        return LocalTask(
            objective=apfl_objective, step=apfl_step(self.local_lr, self.alpha_lr, self.local_weight_decay)
        )

    def client_messages(self, plan, rows, pseudo_grads, result=None) -> torch.Tensor:
        d = (plan.start.shape[1] - 1) // 2
        clients = plan.clients[rows]
        final = plan.start[rows] - self.local_lr * pseudo_grads if result is None else result.final
        self.state.set("v", clients, final[:, d : 2 * d])
        self.state.set("alpha", clients, final[:, 2 * d :])
        plan.start = plan.start[:, :d]
        return pseudo_grads[:, :d]

    def client_evaluation_parameters(self, module, clients, global_params) -> torch.Tensor:
        clients = clients.to(global_params.device)
        v = self.state.get("v", clients).to(global_params.dtype)
        alpha = self.state.get("alpha", clients).to(global_params.dtype)
        return alpha * v + (1 - alpha) * global_params
