"""FedRep (Collins et al., ICML 2021, Algorithm 1; the formula as in PFLlib's ``clientrep``).

The model is a shared body φ (representation) and a personal head h (``personal_parameters``, e.g.
``[classifier]``). In every round a client, starting from the global body and its own head,

1. trains the head for ``head_steps`` local SGD steps with the body frozen (``h ← h − η_h ∇_h f``),
2. then the body for ``body_steps`` steps with the head frozen (``φ ← φ − η ∇_φ f``);

the server averages the bodies (data-size weighted; ``server_lr = local_lr`` makes the global body the
weighted mean of the clients' bodies) and the heads stay in the client state (base class).

Engine mapping: both phases run as one local training of ``head_steps + body_steps`` steps whose
:class:`~runner.federated.simulator.LocalTask` ``step`` masks the update by phase (``s < head_steps``:
head coordinates only; afterwards: body coordinates only), so ``self.local_steps`` (what the engine
draws batches for) is the sum and the config's ``local_steps`` is the body's τ. With
``local_epochs`` the body phase is the client's local epochs (its own step count) and the engine
draws ``head_steps`` more steps first (``extra_local_steps``); PFLlib counts the head phase in
epochs too (``plocal_epochs``) — here it stays a step count.
"""

from __future__ import annotations

from typing import Any

import torch

from runner.errors import invalid_value
from runner.federated.simulator import LocalTask
from runner.federated.strategy import RoundPlan, Strategy

__all__ = ["FedRep", "alternating_step"]


def alternating_step(
    head: torch.Tensor, head_steps: int, head_lr: float, body_lr: float, weight_decay: float
):
    """Local ``Step``: SGD on the head coordinates for ``s < head_steps``, on the body afterwards.

    ``head`` is the ``(d,)`` bool mask of the personal head. Row-wise ops only (vmap-safe)."""
    body = ~head

    def step(params, grads, state, s):
        if weight_decay:
            grads = grads + weight_decay * params
        if s < head_steps:
            update = head_lr * grads * head.to(grads.dtype)
        else:
            update = body_lr * grads * body.to(grads.dtype)
        return params - update, state

    return step


class FedRep(Strategy):
    """FedRep: head first (body frozen), then body (head frozen); body averaged, head personal.

    Args:
        head_steps: local steps of the head phase (PFLlib ``plocal_epochs``).
        head_lr: head learning rate (None = ``local_lr``).
        **base: :class:`~runner.federated.strategy.Strategy` arguments; ``local_steps`` is the body
            phase's step count and ``personal_parameters`` must name the head.
    """

    def __init__(self, head_steps: int = 10, head_lr: float | None = None, **base: Any) -> None:
        super().__init__(**base)
        if not self.personal_parameters:
            raise invalid_value(
                "fl_strategy.personal_parameters", [], "the head's name fragments, e.g. [classifier]"
            )
        if int(head_steps) < 0:
            raise invalid_value("fl_strategy.head_steps", head_steps, "an integer >= 0")
        self.head_steps = int(head_steps)
        if self.local_steps is not None:  # body: local_steps steps; the engine draws head + body
            self.body_steps = self.local_steps
            self.local_steps = self.head_steps + self.body_steps
        else:  # body: local_epochs over the client's data, after head_steps steps
            self.body_steps = None
            self.extra_local_steps = self.head_steps
        self.head_lr = self.local_lr if head_lr is None else float(head_lr)

    def configure_local(self, module, plan: RoundPlan, rows: torch.Tensor) -> LocalTask:
        step = alternating_step(
            self.personal_mask.to(plan.start.device),
            self.head_steps,
            self.head_lr,
            self.local_lr,
            self.local_weight_decay,
        )
        return LocalTask(step=step)
