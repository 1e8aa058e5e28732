"""FedProto (Tan et al., AAAI 2022): prototype regularisation, no model averaging.

Every parameter stays on its client (``personal_parameters: [""]`` matches all names). Local objective
(FedProto eq. 8, as FedPall's code runs it)::

    CE(f(x), y) + λ · MSE(h, P̄_y)

with ``h`` the classifier's input, ``P̄_y`` the global prototype of the sample's class and the MSE
averaged over the batch and the feature dimension (``nn.MSELoss``); a sample whose class has no
global prototype yet contributes zero (its target is its own detached feature), and the first round
has no prototypes (CE only). After local training each client's class means of ``h`` over its
whole training set and class counts go to the server, whose global prototypes are the count-weighted
means (FedProto eq. 6, FedPall's ``proto_aggregation``)::

    P̄_c = Σ_n N_{n,c} μ_{n,c} / Σ_n N_{n,c}

Evaluation: each client's own model (its classifier), as in FedPall's comparison.

Also here, shared by the prototype strategies (FedPall): :func:`client_features` (features of a
client's training set under its local parameters) and :class:`LazyBuffers` (server buffers whose
shape is known only once the model runs, restored from checkpoints at their saved shape).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from runner.errors import invalid_value
from runner.federated.prototypes import class_means
from runner.federated.simulator import LocalResult, LocalTask
from runner.federated.strategy import RoundPlan, Strategy

__all__ = ["FedProto", "LazyBuffers", "client_features", "personal_in_model_dtype", "prototype_mse_objective"]


def personal_in_model_dtype(strategy: Strategy, initial: torch.Tensor) -> None:
    """Re-create the base class's ``personal`` client state in the model's dtype (the engine makes
    it float32, which a float64 model cannot start from); call after ``Strategy.setup``."""
    if "personal" in strategy.state and strategy.state.personal.dtype != initial.dtype:
        mask = strategy.personal_mask
        strategy.state.add("personal", (int(mask.sum()),), initial[mask], dtype=initial.dtype)


@torch.no_grad()
def client_features(
    module, client: int, flat: torch.Tensor, buffers: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(h [n, d], y [n])``: features of all of ``client``'s training samples under the flat
    parameters ``flat`` and running statistics ``buffers`` (None: the global model's), in eval mode
    (chunks of ``module.eval_batch_size``)."""
    data = module.client_data
    index = data.indices_of(int(client))
    with module.eval_mode():
        feats = [
            module.forward_flat(flat, data.x[chunk], buffers=buffers, return_features=True)[1]
            for chunk in index.split(module.eval_batch_size)
        ]
    return torch.cat(feats), data.y[index]


class LazyBuffers:
    """Mixin for an ``nn.Module`` with buffers created before their shape is known (registered
    empty in ``setup``, filled later): on loading a checkpoint, a listed buffer takes the saved shape."""

    lazy_buffers: tuple[str, ...] = ()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in self.lazy_buffers:
            saved = state_dict.get(prefix + name)
            if saved is not None and name in self._buffers and self._buffers[name].shape != saved.shape:
                self._buffers[name] = torch.empty_like(saved, device=self._buffers[name].device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def prototype_mse_objective(lam: float, prototypes: torch.Tensor | None, present: torch.Tensor | None):
    """``CE + λ · MSE(h, P̄_y)`` (module docstring); ``prototypes`` ``[C, d]`` and ``present`` ``[C]``
    are shared by every client (closed over); None = CE only."""

    def objective(forward, flat, x, y, context) -> torch.Tensor:
        logits, h = forward(flat, x, return_features=True)
        loss = F.cross_entropy(logits, y)
        if prototypes is None or lam == 0:
            return loss
        target = torch.where(present[y][:, None], prototypes[y], h.detach())
        return loss + lam * (h - target).pow(2).mean()

    return objective


class FedProto(LazyBuffers, Strategy):
    """FedProto (module docstring).

    Args:
        lam: weight λ of the prototype MSE (FedProto / FedPall's code: 1).
        **base: :class:`~runner.federated.strategy.Strategy` arguments; ``personal_parameters``
            defaults to every parameter.
    """

    lazy_buffers = ("prototypes",)

    def __init__(self, lam: float = 1.0, **base: Any) -> None:
        if base.get("personal_parameters") in (None, []):
            base["personal_parameters"] = [""]
        super().__init__(**base)
        if float(lam) < 0:
            raise invalid_value("fl_strategy.lam", lam, "a number >= 0")
        self.lam = float(lam)
        self._pending: tuple[torch.Tensor, torch.Tensor, torch.Tensor | None] | None = None

    def setup(self, num_clients, initial, personal_mask, seed) -> None:
        super().setup(num_clients, initial, personal_mask, seed)
        personal_in_model_dtype(self, initial)
        self.register_buffer("prototypes", torch.zeros(0, dtype=initial.dtype))
        self.register_buffer("present", torch.zeros(0, dtype=torch.bool))

    def configure_local(self, module, plan: RoundPlan, rows: torch.Tensor) -> LocalTask:
        ready = self.prototypes.numel() > 0
        return LocalTask(
            objective=prototype_mse_objective(
                self.lam, self.prototypes if ready else None, self.present if ready else None
            )
        )

    def client_messages(self, plan, rows, pseudo_grads, result: LocalResult | None = None):
        self._pending = (plan.clients[rows], result.final, result.buffers)
        return super().client_messages(plan, rows, pseudo_grads, result)

    @torch.no_grad()
    def server_update(self, module, round_index: int) -> None:
        """Global prototypes from the clients' class means after local training (FedProto eq. 6)."""
        clients, finals, buffers = self._pending
        self._pending = None
        sums, totals = None, None
        for i, client in enumerate(clients.tolist()):
            h, y = client_features(module, client, finals[i], None if buffers is None else buffers[i])
            means, counts = class_means(h, y, module.num_classes)
            part = counts[:, None] * means
            sums = part if sums is None else sums + part
            totals = counts if totals is None else totals + counts
        self.prototypes = sums / totals.clamp_min(1)[:, None]
        self.present = totals > 0
