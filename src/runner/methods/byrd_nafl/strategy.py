"""Byrd-NAFL as a federated strategy, with its baselines as settings of the same class.

Card (``papers/byrd_nafl.md``), reconstruction documented there: look-ahead ``y_k = x_k + β(x_k −
x_{k−1})``; honest worker ``i`` returns ``gᵢ = ∇fᵢ(y_k; ξ)`` (after ``E`` local steps: the model delta
divided by the local learning rate); the server aggregates ``G_k = AGG(g_1..g_n)`` with a robust
rule and sets ``x_{k+1} = y_k − η G_k``.

``acceleration`` × ``momentum_at`` (the card's momentum-placement switch):

* ``nesterov`` at the ``server`` (default, Byrd-NAFL): :class:`LookaheadNesterov` steps the model.
* ``heavy_ball`` at the ``server``: Polyak momentum on the robust aggregate (``torch.optim.SGD``
  with ``momentum=β``) — the heavy-ball robust-momentum baseline.
* ``none``: robust SGD without momentum (``x_{k+1} = x_k − η G_k``).
* ``momentum_at: clients`` (reconstruction): each honest client keeps its own momentum
  ``mᵢ ← β mᵢ + gᵢ`` in the client state and sends ``mᵢ`` (heavy-ball) or ``gᵢ + β mᵢ``
  (Nesterov); the server then steps plainly. Robust aggregation of worker momenta is the
  distributed-momentum scheme of Karimireddy et al. (2021) / Farhadkhani et al. (2022).

Plain FedAvg is ``aggregator=weighted_mean``, ``acceleration=none``, no Byzantine clients.

``dampening`` (ByzFL's momentum ``m ← β m + (1 − β) g``; default off, the classical undampened
``m ← β m + g``): undampened momentum moves about ``1 / (1 − β)`` times further per unit of η than
robust SGD, so comparing the momentum variants with SGD at one shared η confounds acceleration with
step size. With ``m₀ = 0`` the dampened recursion is the undampened one with every gradient scaled by
``(1 − β)``; at the server this is the same sequence of iterates as the undampened optimizer at
``η (1 − β)`` (heavy ball and the look-ahead Nesterov alike), which is how it is implemented; on the
clients the gradients entering the momentum are scaled. A fair comparison tunes η per (method,
aggregator) on a validation split (``dataset.val_fraction``) and compares each at its best η
(``python -m runner.federated.tuning``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from runner.errors import invalid_value
from runner.federated.strategy import RobustStrategy, RoundPlan

from .optim import LookaheadNesterov

__all__ = ["ACCELERATIONS", "MOMENTUM_PLACEMENTS", "ByrdNAFL"]


def _plain(params, lr, beta):
    return torch.optim.SGD(params, lr=lr)


def _heavy_ball(params, lr, beta):
    return torch.optim.SGD(params, lr=lr, momentum=beta)


def _nesterov(params, lr, beta):
    return LookaheadNesterov(params, lr=lr, beta=beta)


# server optimizer per acceleration (momentum at the server)
ACCELERATIONS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "none": _plain,
    "heavy_ball": _heavy_ball,
    "nesterov": _nesterov,
}


def _client_none(grads, momentum, beta):
    return grads, momentum


def _client_heavy_ball(grads, momentum, beta):
    momentum = beta * momentum + grads
    return momentum, momentum


def _client_nesterov(grads, momentum, beta):
    momentum = beta * momentum + grads
    return grads + beta * momentum, momentum


# (message, new momentum) per acceleration, for momentum kept on the clients
CLIENT_MOMENTUM = {"none": _client_none, "heavy_ball": _client_heavy_ball, "nesterov": _client_nesterov}
MOMENTUM_PLACEMENTS = ("server", "clients")


class ByrdNAFL(RobustStrategy):
    """Robust FL with optional Nesterov / heavy-ball momentum (see the module docstring).

    Args:
        acceleration: ``none`` | ``heavy_ball`` | ``nesterov``.
        momentum_at: ``server`` | ``clients``.
        beta: momentum coefficient β.
        dampening: ByzFL's dampened momentum ``m ← β m + (1 − β) g`` (module docstring).
        **robust: :class:`~runner.federated.strategy.RobustStrategy` arguments (aggregator, attack,
            byzantine_fraction, local_steps, local_lr, batch_size, server_lr, ...).
    """

    def __init__(
        self,
        acceleration: str = "nesterov",
        momentum_at: str = "server",
        beta: float = 0.9,
        dampening: bool = False,
        **robust: Any,
    ) -> None:
        super().__init__(**robust)
        if acceleration not in ACCELERATIONS:
            raise invalid_value(
                "fl_strategy.acceleration", acceleration, "one of " + ", ".join(ACCELERATIONS)
            )
        if momentum_at not in MOMENTUM_PLACEMENTS:
            raise invalid_value(
                "fl_strategy.momentum_at", momentum_at, "one of " + ", ".join(MOMENTUM_PLACEMENTS)
            )
        self.acceleration = acceleration
        self.momentum_at = momentum_at
        if not 0 <= float(beta) < 1:
            raise invalid_value("fl_strategy.beta", beta, "a number in [0, 1)")
        self.beta = float(beta)
        self.dampening = bool(dampening)

    @property
    def momentum_scale(self) -> float:
        """The factor on each gradient entering the momentum: ``1 − β`` when dampened, else 1."""
        return 1.0 - self.beta if self.dampening and self.acceleration != "none" else 1.0

    def setup(self, num_clients, initial, personal_mask, seed) -> None:
        super().setup(num_clients, initial, personal_mask, seed)
        if self.momentum_at == "clients" and self.acceleration != "none":
            self.state.add("momentum", (initial.numel(),), 0.0, dtype=initial.dtype)

    def client_messages(
        self, plan: RoundPlan, rows: torch.Tensor, pseudo_grads: torch.Tensor, result=None
    ) -> torch.Tensor:
        grads = super().client_messages(plan, rows, pseudo_grads, result)
        if "momentum" not in self.state:
            return grads
        clients = plan.clients[rows]
        message, momentum = CLIENT_MOMENTUM[self.acceleration](
            self.momentum_scale * grads, self.state.get("momentum", clients), self.beta
        )
        self.state.set("momentum", clients, momentum)
        return message

    def configure_server_optimizer(self, params) -> torch.optim.Optimizer:
        at_server = self.acceleration if self.momentum_at == "server" else "none"
        scale = self.momentum_scale if at_server != "none" else 1.0
        return ACCELERATIONS[at_server](params, self.server_lr * scale, self.beta)
