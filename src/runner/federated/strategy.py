"""Federated strategies: what a round does, in the shape of Flower's ``Strategy``.

A round is ``configure_train`` (choose clients, what they start from) → local training (the
simulator) → ``client_messages`` (client-side post-processing with persistent client state, e.g.
worker momentum) → Byzantine messages replace the Byzantine clients' → ``aggregate_train`` (robust
aggregation into one direction ``G``) → the server optimizer steps the global model with ``G`` as its
gradient (``configure_server_optimizer``; FedAvg: SGD with the local learning rate, so that
``x ← mean_i θᵢ``). These mirror Flower's ``configure_train`` / ``aggregate_train``, so a Flower adapter
can wrap a strategy thinly.

State: the strategy is an ``nn.Module``; its :class:`~runner.federated.client_state.ClientState`
(per-client momentum, personal parameters, ...) and server buffers are saved in checkpoints.

Unshared (personal) parameters: names containing one of ``personal_parameters`` stay on the
clients (client state ``personal``); clients start from the global shared coordinates plus their own
personal ones, and messages are zero on personal coordinates.

Local work: ``local_epochs`` (E epochs over each client's own data, so clients of different sizes take
different step counts, as the papers train) or ``local_steps`` (the same number of minibatch steps,
drawn with replacement, for every client); exactly one of the two is set.

Running statistics (BatchNorm buffers; :class:`~runner.federated.simulator.BufferLayout`): each
client trains on, and updates, its own copy. Which buffers are shared is the strategy's choice
(:meth:`Strategy.personal_buffer_mask_of`): by default a buffer follows its layer's parameters (personal
when its name matches ``personal_parameters``, or ``personal_buffers`` when that is given), so FedAvg
averages every running statistic (data-size weighted, as the official codes average whole state
dicts) and FedBN / local-only / FedProto keep them all on the clients. Hooks, all with defaults:
:meth:`setup_buffers`, :meth:`start_buffers` (a round's start statistics), :meth:`aggregate_buffers`
(keeps the personal ones in the client state ``personal_buffers``, returns the new global ones),
:meth:`evaluation_buffers` and :meth:`client_evaluation_buffers` (evaluation, in eval mode).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from runner.errors import UserError, invalid_value

from .aggregators import AGGREGATORS, PRE_AGGREGATORS, check_byzantine_bound
from .attacks import ATTACKS, Attack
from .client_state import ClientState
from .simulator import LocalResult, LocalTask

__all__ = ["RobustStrategy", "RoundPlan", "Strategy", "round_generator"]


def round_generator(seed: int, round_index: int) -> torch.Generator:
    """The CPU generator of one round: a function of (seed, round) only, so resuming is exact."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + int(round_index) + 1)


@dataclass
class RoundPlan:
    """What ``configure_train`` decided for one round."""

    round_index: int
    clients: torch.Tensor  # (C,) participating client ids
    byzantine: torch.Tensor  # (C,) bool: which participants are Byzantine
    start: torch.Tensor  # (C, d) the parameters each participant starts local training from
    generator: torch.Generator
    f: int  # Byzantine count the aggregator is told to tolerate


class Strategy(nn.Module):
    """FedAvg-shaped base strategy (no attack, plain or weighted mean).

    Args:
        clients_per_round: participants per round (None = all clients).
        local_steps: minibatch steps per client per round (the same for every client), or None.
        local_epochs: epochs over each client's own data per round (steps differ by client), or None;
            exactly one of ``local_steps`` / ``local_epochs`` is set.
        local_lr, batch_size, local_weight_decay: the client update (local SGD).
        server_lr: step size of the server optimizer on the aggregated direction.
        personal_parameters: name fragments of parameters that are never averaged.
        personal_buffers: name fragments of buffers (running statistics) that are never averaged;
            None = the buffers whose names match ``personal_parameters`` (module docstring).
    """

    def __init__(
        self,
        clients_per_round: int | None = None,
        local_steps: int | None = 1,
        local_lr: float = 0.1,
        batch_size: int = 32,
        local_weight_decay: float = 0.0,
        server_lr: float = 1.0,
        personal_parameters: list[str] | None = None,
        local_epochs: float | None = None,
        personal_buffers: list[str] | None = None,
    ) -> None:
        super().__init__()
        if (local_steps is None) == (local_epochs is None):
            raise UserError(
                f"fl_strategy: set exactly one of local_steps ({local_steps}) and local_epochs ({local_epochs}); "
                "override the other with null (e.g. fl_strategy.local_epochs=null fl_strategy.local_steps=5)"
            )
        if local_steps is not None and int(local_steps) < 1:
            raise invalid_value(
                "fl_strategy.local_steps", local_steps, "an integer >= 1 (or null with local_epochs)"
            )
        if local_epochs is not None and not float(local_epochs) > 0:
            raise invalid_value(
                "fl_strategy.local_epochs", local_epochs, "a number > 0 (or null with local_steps)"
            )
        self.clients_per_round = clients_per_round
        self.local_steps = None if local_steps is None else int(local_steps)
        self.local_epochs = None if local_epochs is None else float(local_epochs)
        self.personal_buffers = None if personal_buffers is None else list(personal_buffers)
        # steps a strategy runs on top of the local epochs (FedRep's head phase); with local_steps the
        # strategy folds them into local_steps itself
        self.extra_local_steps = 0
        self.local_lr = float(local_lr)
        self.batch_size = int(batch_size)
        self.local_weight_decay = float(local_weight_decay)
        self.server_lr = float(server_lr)
        self.personal_parameters = list(personal_parameters or [])
        self.state = ClientState()
        self.num_clients = 0
        self.seed = 0

    # ---- lifecycle -------------------------------------------------------------------------------
    def setup(self, num_clients: int, initial: torch.Tensor, personal_mask: torch.Tensor, seed: int) -> None:
        """Create the client state (called from the LightningModule's ``setup``)."""
        self.num_clients = int(num_clients)
        self.seed = int(seed)
        self.state = ClientState(num_clients)
        if self.clients_per_round is not None and not 1 <= int(self.clients_per_round) <= num_clients:
            raise invalid_value(
                "fl_strategy.clients_per_round", self.clients_per_round, f"an integer in [1, {num_clients}]"
            )
        self.register_buffer("personal_mask", personal_mask.clone(), persistent=False)
        self.register_buffer("personal_buffer_mask", torch.zeros(0, dtype=torch.bool), persistent=False)
        if bool(personal_mask.any()):
            self.state.add(
                "personal", (int(personal_mask.sum()),), initial[personal_mask], dtype=initial.dtype
            )

    def setup_buffers(self, layout, initial: torch.Tensor) -> None:
        """Create the per-client running-statistics state (called after :meth:`setup`, with the
        model's :class:`~runner.federated.simulator.BufferLayout` and its initial flat buffers)."""
        mask = self.personal_buffer_mask_of(layout).to(torch.bool)
        self.register_buffer("personal_buffer_mask", mask.clone(), persistent=False)
        if bool(mask.any()):
            self.state.add("personal_buffers", (int(mask.sum()),), initial[mask], dtype=initial.dtype)

    def personal_buffer_mask_of(self, layout) -> torch.Tensor:
        """``(d_b,)`` bool: the buffer coordinates each client keeps (module docstring)."""
        patterns = self.personal_parameters if self.personal_buffers is None else self.personal_buffers
        return layout.mask(patterns)

    def start_buffers(
        self, plan: RoundPlan, rows: torch.Tensor, global_buffers: torch.Tensor
    ) -> torch.Tensor:
        """``(C, d_b)`` running statistics the participants ``plan.clients[rows]`` start from: the
        global ones with each client's personal coordinates."""
        return self.client_evaluation_buffers(None, plan.clients[rows], global_buffers)

    def aggregate_buffers(
        self,
        plan: RoundPlan,
        rows: torch.Tensor,
        buffers: torch.Tensor,
        weights: torch.Tensor,
        global_buffers: torch.Tensor,
    ) -> torch.Tensor:
        """After local training of the (honest) participants ``plan.clients[rows]``, whose statistics
        are ``buffers (C, d_b)``: keep their personal coordinates, and return the new global buffers
        (shared coordinates: the ``weights``-weighted mean; personal ones: unchanged)."""
        mask = self.personal_buffer_mask.to(buffers.device)
        if "personal_buffers" in self.state:
            clients = plan.clients[rows].to(self.state.personal_buffers.device)
            self.state.set("personal_buffers", clients, buffers[:, mask])
        if buffers.shape[0] == 0 or bool(mask.all()):
            return global_buffers
        w = weights.to(buffers.dtype)
        mean = (w[:, None] * buffers).sum(0) / w.sum().clamp_min(torch.finfo(buffers.dtype).tiny)
        return torch.where(mask, global_buffers, mean.to(global_buffers.dtype))

    def evaluation_buffers(self, module, global_buffers: torch.Tensor) -> torch.Tensor:
        """The running statistics of the *global* evaluation (default: the global ones)."""
        return global_buffers

    def client_evaluation_buffers(
        self, module, clients: torch.Tensor, global_buffers: torch.Tensor
    ) -> torch.Tensor:
        """``(C, d_b)`` running statistics of each client's personalised model: the global ones with
        the client's personal coordinates."""
        out = global_buffers.expand(len(clients), -1).clone()
        if "personal_buffers" in self.state:
            mask = self.personal_buffer_mask.to(out.device)
            out[:, mask] = self.state.get("personal_buffers", clients.to(out.device)).to(out.dtype)
        return out

    @property
    def participants(self) -> int:
        return self.num_clients if self.clients_per_round is None else int(self.clients_per_round)

    # ---- Flower-shaped round ---------------------------------------------------------------------
    def sample_clients(self, generator: torch.Generator) -> torch.Tensor:
        if self.participants == self.num_clients:
            return torch.arange(self.num_clients)
        return torch.randperm(self.num_clients, generator=generator)[: self.participants].sort().values

    def byzantine_of(self, clients: torch.Tensor) -> torch.Tensor:
        return torch.zeros(len(clients), dtype=torch.bool, device=clients.device)

    def declared_byzantine(self) -> int:
        return 0

    def configure_train(self, round_index: int, global_params: torch.Tensor) -> RoundPlan:
        generator = round_generator(self.seed, round_index)
        clients = self.sample_clients(generator).to(global_params.device)
        start = global_params.expand(len(clients), -1).clone()
        if "personal" in self.state:
            start[:, self.personal_mask] = self.state.get("personal", clients)
        return RoundPlan(
            round_index, clients, self.byzantine_of(clients), start, generator, self.declared_byzantine()
        )

    def configure_local(self, module, plan: RoundPlan, rows: torch.Tensor) -> LocalTask | None:
        """What the training participants ``plan.clients[rows]`` optimise locally; ``None`` is the
        default (cross-entropy, SGD with ``local_lr`` / ``local_weight_decay``). ``module`` is the
        :class:`~runner.federated.module.FederatedModule` (its net, layout and client data)."""
        return None

    def client_messages(
        self,
        plan: RoundPlan,
        rows: torch.Tensor,
        pseudo_grads: torch.Tensor,
        result: LocalResult | None = None,
    ) -> torch.Tensor:
        """Messages of the participants ``plan.clients[rows]`` that trained, given their
        pseudo-gradients (and the full local result: final parameters, optimizer state); keeps
        their personal parameters in the client state."""
        if "personal" in self.state:
            clients = plan.clients[rows]
            after = plan.start[rows] - self.local_lr * pseudo_grads if result is None else result.final
            self.state.set("personal", clients, after[:, self.personal_mask])
            pseudo_grads = pseudo_grads.clone()
            pseudo_grads[:, self.personal_mask] = 0
        return pseudo_grads

    def byzantine_messages(
        self, plan: RoundPlan, honest: torch.Tensor, own: torch.Tensor | None
    ) -> torch.Tensor:
        return honest[:0]

    def aggregate_train(
        self, plan: RoundPlan, messages: torch.Tensor, weights: torch.Tensor | None
    ) -> torch.Tensor:
        """The direction the server steps along: the data-size weighted mean (FedAvg)."""
        return AGGREGATORS["weighted_mean"].fn(messages, 0, weights)

    def configure_server_optimizer(self, params) -> torch.optim.Optimizer:
        return torch.optim.SGD(params, lr=self.server_lr)

    def server_update(self, module, round_index: int) -> None:
        """After the server optimizer's step: server-side work of the round (e.g. training a global
        head on uploaded features; write with ``module.set_global_flat``). Default: nothing."""

    # ---- evaluation -------------------------------------------------------------------------------
    def evaluation_parameters(self, module, global_params: torch.Tensor) -> torch.Tensor:
        """The flat parameters the *global* evaluation uses (default: the global model)."""
        return global_params

    def client_evaluation_parameters(
        self, module, clients: torch.Tensor, global_params: torch.Tensor
    ) -> torch.Tensor:
        """``(C, d)`` parameters of each client's *personalised* model, evaluated on its own test
        split (default: the global model with the client's personal coordinates)."""
        params = global_params.expand(len(clients), -1).clone()
        if "personal" in self.state:
            params[:, self.personal_mask] = self.state.get("personal", clients.to(params.device))
        return params

    # ---- data attacks hook (identity without an attack) -------------------------------------------
    @property
    def attack(self) -> Attack:
        return ATTACKS["none"]()


class RobustStrategy(Strategy):
    """Byzantine-robust FL: a fraction of clients is Byzantine (an attack forges their messages) and
    the server aggregates with a robust rule, optionally after a pre-aggregation.

    Args:
        aggregator: a name of :data:`~runner.federated.aggregators.AGGREGATORS`.
        aggregator_options: ``{rule name: {option: value}}``; the chosen rule's entry is used.
        pre_aggregation: None or a name of :data:`~runner.federated.aggregators.PRE_AGGREGATORS`.
        pre_aggregation_options: same shape as ``aggregator_options``.
        attack: a name of :data:`~runner.federated.attacks.ATTACKS`; attack_options like above.
        byzantine_fraction: fraction of all clients that are Byzantine (a fixed, seeded set);
            the rule is told ``f = round(fraction × participants)``.
        center_on_previous: centered clipping starts from the previous round's aggregate.
    """

    def __init__(
        self,
        aggregator: str = "mean",
        aggregator_options: Mapping[str, Mapping[str, Any]] | None = None,
        pre_aggregation: str | None = None,
        pre_aggregation_options: Mapping[str, Mapping[str, Any]] | None = None,
        attack: str = "none",
        attack_options: Mapping[str, Mapping[str, Any]] | None = None,
        byzantine_fraction: float = 0.0,
        center_on_previous: bool = True,
        **base: Any,
    ) -> None:
        super().__init__(**base)
        if aggregator not in AGGREGATORS:
            raise invalid_value("fl_strategy.aggregator", aggregator, "one of " + ", ".join(AGGREGATORS))
        if pre_aggregation is not None and pre_aggregation not in PRE_AGGREGATORS:
            raise invalid_value(
                "fl_strategy.pre_aggregation", pre_aggregation, "null or one of " + ", ".join(PRE_AGGREGATORS)
            )
        if attack not in ATTACKS:
            raise invalid_value("fl_strategy.attack", attack, "one of " + ", ".join(ATTACKS))
        if not 0.0 <= float(byzantine_fraction) < 1.0:
            raise invalid_value("fl_strategy.byzantine_fraction", byzantine_fraction, "a number in [0, 1)")
        self.aggregator = aggregator
        self.rule = AGGREGATORS[aggregator]
        self.rule_options = dict((aggregator_options or {}).get(aggregator) or {})
        self.pre_aggregation = pre_aggregation
        self.pre_options = dict((pre_aggregation_options or {}).get(pre_aggregation or "") or {})
        self.attack_name = attack
        self._attack = ATTACKS[attack](**dict((attack_options or {}).get(attack) or {}))
        self.byzantine_fraction = float(byzantine_fraction)
        self.center_on_previous = bool(center_on_previous)

    @property
    def attack(self) -> Attack:
        return self._attack

    def setup(self, num_clients, initial, personal_mask, seed) -> None:
        super().setup(num_clients, initial, personal_mask, seed)
        count = round(self.byzantine_fraction * num_clients)
        chosen = torch.randperm(num_clients, generator=torch.Generator().manual_seed(int(seed) + 12345))[
            :count
        ]
        mask = torch.zeros(num_clients, dtype=torch.bool)
        mask[chosen] = True
        self.register_buffer("is_byzantine", mask)
        self.register_buffer("previous_aggregate", torch.zeros_like(initial))
        n, f = self.participants, self.declared_byzantine()
        context = f" (fl_strategy.byzantine_fraction={self.byzantine_fraction} of {n} participants)"
        n_rule = n
        if self.pre_aggregation == "bucketing":
            size = int(self.pre_options.get("bucket_size", 2))
            n_rule = -(-n // size)
            context += f" after bucketing into {n_rule} buckets"
        check_byzantine_bound(self.aggregator, n_rule, f, context)

    def declared_byzantine(self) -> int:
        return round(self.byzantine_fraction * self.participants)

    def byzantine_of(self, clients: torch.Tensor) -> torch.Tensor:
        return self.is_byzantine[clients]

    def byzantine_messages(self, plan, honest, own):
        count = int(plan.byzantine.sum())
        if count == 0:
            return honest[:0]
        return self._attack(honest, count, own=own, generator=plan.generator)

    def aggregate_train(self, plan, messages, weights):
        stack = messages
        if self.pre_aggregation is not None:
            stack = PRE_AGGREGATORS[self.pre_aggregation](
                stack, plan.f, generator=plan.generator, **self.pre_options
            )
            weights = None
        extra = {}
        if self.rule.takes_center and self.center_on_previous:
            extra["center"] = self.previous_aggregate
        direction = self.rule.fn(stack, plan.f, weights, **self.rule_options, **extra)
        self.previous_aggregate.copy_(direction)
        return direction
