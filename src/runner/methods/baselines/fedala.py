"""FedALA (Zhang et al., AAAI 2023, eq. 4-6; the formula as in PFLlib's ``ALA`` module).

Adaptive local aggregation: before local training, client ``k`` initialises its model from its
previous local model ``θ_k`` and the received global model ``w`` as

    ``θ̂_k = θ_k + (w − θ_k) ⊙ W_k``   on the higher layers (the last ``layer_idx`` parameter tensors),
    ``θ̂_k = w``                       on the lower layers,

with element-wise weights ``W_k ∈ [0, 1]`` (client state ``ala_weights``, initialised to 1) learned by
``ala_steps`` SGD steps (``ala_lr``, PFLlib's η = 1.0) on the client's loss of ``θ̂_k`` w.r.t. ``W``,
each followed by a clip to [0, 1]; then ordinary local training from ``θ̂_k``; the server is FedAvg
(data-size weighted mean, ``server_lr = local_lr``). The first round is a no-op (``θ_k = w``).

Deviations: PFLlib trains ``W`` on a random ``rand_percent`` of the local data until the loss
stabilises in the first round and for one pass afterwards; here ``ala_steps`` minibatches of
``batch_size`` every round. The personalised evaluation is the client's ALA initialisation from the
current global model with its last ``W_k`` (what PFLlib evaluates after ``local_initialization``).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from runner.errors import invalid_value
from runner.federated.simulator import LocalTask
from runner.federated.strategy import RoundPlan, Strategy

__all__ = ["FedALA", "ala_objective", "clipped_sgd_step"]


def ala_objective(forward, flat, x, y, context) -> torch.Tensor:
    """Loss of ``base + delta ⊙ W`` (``flat`` = W; base / delta in the client's context)."""
    return F.cross_entropy(forward(context["base"] + context["delta"] * flat, x), y)


def clipped_sgd_step(lr: float):
    def step(params, grads, state, s):
        return (params - lr * grads).clamp(0.0, 1.0), state

    return step


class FedALA(Strategy):
    """FedAvg with adaptive local aggregation at the clients (module docstring).

    Args:
        layer_idx: how many trailing parameter tensors are the "higher layers" ALA mixes (PFLlib ``layer_idx``).
        ala_steps: SGD steps on ``W`` per round; ala_lr: their step size (PFLlib ``eta`` = 1.0).
        **base: :class:`~runner.federated.strategy.Strategy` arguments.
    """

    def __init__(self, layer_idx: int = 2, ala_steps: int = 5, ala_lr: float = 1.0, **base: Any) -> None:
        super().__init__(**base)
        if int(layer_idx) < 1:
            raise invalid_value("fl_strategy.layer_idx", layer_idx, "an integer >= 1")
        if self.personal_parameters:
            raise invalid_value("fl_strategy.personal_parameters", self.personal_parameters, "[] for FedALA")
        self.layer_idx = int(layer_idx)
        self._global: torch.Tensor | None = None
        self.ala_steps = int(ala_steps)
        self.ala_lr = float(ala_lr)

    def setup(self, num_clients, initial, personal_mask, seed) -> None:
        super().setup(num_clients, initial, personal_mask, seed)
        self.state.add("local", (initial.numel(),), initial)
        self.state.add("ala_weights", (initial.numel(),), 1.0)
        self.register_buffer("higher", torch.zeros(initial.numel(), dtype=torch.bool), persistent=False)
        self._higher_ready = False

    def _higher(self, module) -> torch.Tensor:
        if not self._higher_ready:
            names = module.layout.names[-self.layer_idx :]
            self.higher = module.layout.mask(names).to(self.higher.device)
            self._higher_ready = True
        return self.higher

    def base_and_delta(self, module, clients, global_params) -> tuple[torch.Tensor, torch.Tensor]:
        """``θ̂ = base + delta ⊙ W`` with base / delta from the clients' local models and ``w``."""
        higher = self._higher(module).to(global_params.device)
        local = self.state.get("local", clients).to(global_params.dtype)
        glob = global_params.expand_as(local)
        base = torch.where(higher, local, glob)
        delta = torch.where(higher, glob - local, torch.zeros_like(local))
        return base, delta

    def configure_local(self, module, plan: RoundPlan, rows: torch.Tensor) -> LocalTask | None:
        clients = plan.clients[rows]
        global_params = plan.start[0].clone()  # every client starts from the global model (no personal part)
        self._global = global_params
        base, delta = self.base_and_delta(module, clients, global_params)
        weights = self.state.get("ala_weights", clients).to(base.dtype)
        if self.ala_steps > 0 and bool((delta != 0).any()):
            xs, ys = module.client_batches(clients, plan.generator, steps=self.ala_steps)
            task = LocalTask(
                objective=ala_objective,
                context={"base": base, "delta": delta},
                step=clipped_sgd_step(self.ala_lr),
            )
            weights = module.train_clients(weights, xs, ys, task, steps=self.ala_steps, lr=self.ala_lr).final
            weights = weights.detach()
            self.state.set("ala_weights", clients, weights)
        plan.start[rows] = base + delta * weights
        return None

    def client_messages(self, plan, rows, pseudo_grads, result=None) -> torch.Tensor:
        final = plan.start[rows] - self.local_lr * pseudo_grads if result is None else result.final
        self.state.set("local", plan.clients[rows], final)
        # FedAvg of the final models: the pseudo-gradient relative to the global model, not to θ̂
        return (self._global - final) / self.local_lr

    def client_evaluation_parameters(self, module, clients, global_params) -> torch.Tensor:
        clients = clients.to(global_params.device)
        base, delta = self.base_and_delta(module, clients, global_params)
        return base + delta * self.state.get("ala_weights", clients).to(base.dtype)
