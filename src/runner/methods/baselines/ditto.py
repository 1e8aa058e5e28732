"""Ditto (Li et al., ICML 2021, Algorithm 1; the formula as in PFLlib's ``clientditto``).

The global model is trained exactly as FedAvg (local SGD from the global model, data-size weighted
mean, ``server_lr = local_lr``). Every participating client also keeps a personal model ``v_k`` (client
state ``personal_model``) and trains it for ``personal_steps`` SGD steps (``personal_lr``) on

    ``f_k(v) + λ/2 ‖v − wᵗ‖²``

with ``wᵗ`` the global model the round started from (a second ``module.train_clients`` call with
FedProx's proximal objective). The personalised model evaluated on the client's test split is
``v_k``. ``v_k`` starts as the initial global model (Ditto's initialisation).
"""

from __future__ import annotations

from typing import Any

import torch

from runner.errors import invalid_value
from runner.federated.simulator import LocalTask
from runner.federated.strategy import RoundPlan, Strategy

from .fedprox import proximal_objective

__all__ = ["Ditto"]


class Ditto(Strategy):
    """FedAvg for the global model + a proximal personal model per client (module docstring).

    Args:
        lam: λ of the proximal term to the global model (Ditto's grid: 0.01 … 2; PFLlib default 0.1).
        personal_steps: local steps of the personal model per round (None = the local work of the
            global model: ``local_steps``, or ``local_epochs`` with per-client counts).
        personal_lr: its learning rate (None = ``local_lr``).
        **base: :class:`~runner.federated.strategy.Strategy` arguments.
    """

    def __init__(
        self,
        lam: float = 0.1,
        personal_steps: int | None = None,
        personal_lr: float | None = None,
        **base: Any,
    ) -> None:
        super().__init__(**base)
        if float(lam) < 0:
            raise invalid_value("fl_strategy.lam", lam, "a number >= 0")
        self.lam = float(lam)
        # None: the same local work as the global model's (local_steps, or local_epochs per client)
        self.personal_steps = None if personal_steps is None else int(personal_steps)
        self.personal_lr = self.local_lr if personal_lr is None else float(personal_lr)
        self._round: dict[str, Any] = {}

    def setup(self, num_clients, initial, personal_mask, seed) -> None:
        super().setup(num_clients, initial, personal_mask, seed)
        self.state.add("personal_model", (initial.numel(),), initial)

    def configure_local(self, module, plan: RoundPlan, rows: torch.Tensor) -> LocalTask | None:
        self._round = {"module": module}
        return None

    def train_personal(self, module, plan: RoundPlan, rows: torch.Tensor) -> torch.Tensor:
        """The personal models of ``plan.clients[rows]`` after this round's proximal training."""
        clients = plan.clients[rows]
        if self.personal_steps is None:  # the strategy's unit (local_epochs: per-client step counts)
            xs, ys, steps = module.local_batches(clients, plan.generator)
        else:
            xs, ys = module.client_batches(clients, plan.generator, steps=self.personal_steps)
            steps = self.personal_steps
        task = LocalTask(objective=proximal_objective(self.lam), context={"anchor": plan.start[rows]})
        start = self.state.get("personal_model", clients).to(plan.start.dtype)
        result = module.train_clients(start, xs, ys, task, steps=steps, lr=self.personal_lr)
        return result.final.detach()

    def client_messages(self, plan, rows, pseudo_grads, result=None) -> torch.Tensor:
        module = self._round.pop("module", None)
        if module is not None:
            self.state.set("personal_model", plan.clients[rows], self.train_personal(module, plan, rows))
        return super().client_messages(plan, rows, pseudo_grads, result)

    def client_evaluation_parameters(self, module, clients, global_params) -> torch.Tensor:
        return self.state.get("personal_model", clients.to(global_params.device)).to(global_params.dtype)
