"""Local training of many clients, two execution paths with identical math.

Both paths run, for every training client ``i`` of a round, ``S`` local SGD steps from its start
point ``θᵢ⁰`` on minibatches drawn from its own preloaded data, and return the pseudo-gradient
``(θᵢ⁰ − θᵢˢ) / η`` (``= ∇fᵢ(θᵢ⁰; ξ)`` when ``S = 1``; FedAvg's model delta divided by the local
learning rate otherwise).

* **vectorized**: ``torch.func.vmap`` of ``grad_and_value`` over stacked flat client parameters and
  ``functional_call`` of one module; all clients step together (one batched computation on a GPU).
* **sequential**: a tight loop over clients reusing the same module and the same preloaded device
  tensors (no per-client DataLoader, no model copy); gradients by ``torch.autograd.grad``.

``execution="auto"`` picks vectorized on CUDA and sequential elsewhere (design.md: on 2 CPU cores vmap
measured 3× slower than the loop; on an H100 21× faster at 100 clients).

Parameters travel as one flat vector (``ParamLayout``); the model must have no buffers that change in
training (GroupNorm, or BatchNorm with ``track_running_stats=False``), so a client is a pure function
of its parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from runner.errors import invalid_value

__all__ = [
    "EXECUTIONS",
    "ClientData",
    "LocalResult",
    "LocalTask",
    "LocalTraining",
    "ParamLayout",
    "cross_entropy_objective",
    "resolve_execution",
]

EXECUTIONS = ("auto", "vectorized", "sequential")


def resolve_execution(execution: str, device: torch.device) -> str:
    """``auto`` → vectorized on CUDA, sequential otherwise."""
    if execution not in EXECUTIONS:
        raise invalid_value("method.execution", execution, "one of " + ", ".join(EXECUTIONS))
    if execution == "auto":
        return "vectorized" if device.type == "cuda" else "sequential"
    return execution


class ParamLayout:
    """Names, shapes and offsets of a module's parameters in one flat vector."""

    def __init__(self, module: nn.Module) -> None:
        named = list(module.named_parameters())
        self.names = [n for n, _ in named]
        self.shapes = [tuple(p.shape) for _, p in named]
        self.numels = [p.numel() for _, p in named]
        self.dim = int(sum(self.numels))
        moving = [n for n, b in module.named_buffers() if b.is_floating_point()]
        if moving:
            raise invalid_value(
                "model",
                type(module).__name__,
                f"has buffers {moving[:3]} (e.g. BatchNorm running statistics); FL clients must be pure "
                "functions of their parameters: use GroupNorm or BatchNorm(track_running_stats=False)",
            )

    def flatten(self, params) -> torch.Tensor:
        return torch.cat([p.reshape(-1) for p in params])

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        pieces = torch.split(flat, self.numels, dim=-1)
        lead = flat.shape[:-1]
        return {n: t.reshape(*lead, *s) for n, t, s in zip(self.names, pieces, self.shapes, strict=True)}

    def mask(self, patterns: list[str]) -> torch.Tensor:
        """Boolean ``(dim,)`` mask of the coordinates of parameters whose name contains a pattern."""
        parts = [
            torch.full((k,), any(p in n for p in patterns))
            for n, k in zip(self.names, self.numels, strict=True)
        ]
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.bool)


@dataclass
class ClientData:
    """A training set preloaded as tensors plus each client's sample indices.

    ``order[offsets[k] : offsets[k] + sizes[k]]`` are client ``k``'s indices into ``x`` / ``y``.
    """

    x: torch.Tensor
    y: torch.Tensor
    order: torch.Tensor
    offsets: torch.Tensor
    sizes: torch.Tensor

    @classmethod
    def from_parts(cls, x: torch.Tensor, y: torch.Tensor, parts: list[np.ndarray]) -> ClientData:
        sizes = torch.tensor([len(p) for p in parts], dtype=torch.long)
        offsets = torch.cumsum(sizes, 0) - sizes
        order = torch.from_numpy(np.concatenate(parts).astype(np.int64))
        return cls(x, y, order, offsets, sizes)

    @property
    def num_clients(self) -> int:
        return int(self.sizes.numel())

    def to(self, device: torch.device | str) -> ClientData:
        return ClientData(*(t.to(device) for t in (self.x, self.y, self.order, self.offsets, self.sizes)))

    def indices_of(self, client: int) -> torch.Tensor:
        """All sample indices (into ``x`` / ``y``) of one client."""
        start = int(self.offsets[client])
        return self.order[start : start + int(self.sizes[client])]

    def sample_indices(
        self, clients: torch.Tensor, steps: int, batch_size: int, generator: torch.Generator
    ) -> torch.Tensor:
        """``(C, steps, batch_size)`` sample indices, uniform with replacement within each client.

        Uniforms are drawn on the CPU from ``generator`` (the round's seeded generator) so both
        execution paths, and a resumed run, see the same minibatches on any device."""
        u = torch.rand(len(clients), steps, batch_size, generator=generator, dtype=torch.float64)
        u = u.to(self.sizes.device)
        sizes = self.sizes[clients].view(-1, 1, 1)
        local = (u * sizes).long().clamp_max(sizes - 1)
        return self.order[self.offsets[clients].view(-1, 1, 1) + local]


Objective = Callable[..., torch.Tensor]
"""``objective(forward, flat, x, y, context) -> scalar``: one client's local loss on one minibatch.

``forward(flat, x, **kwargs)`` runs the model with the flat parameters ``flat`` (a
``functional_call``; FL models may accept ``return_features=True`` and return ``(logits, features)``);
``context`` holds the client's rows of :attr:`LocalTask.context` (its anchor model, prototypes ...)."""

Step = Callable[..., tuple[torch.Tensor, tuple[torch.Tensor, ...]]]
"""``step(params, grads, state, s) -> (params, state)`` on stacked rows ``(C, d)`` (row-wise ops only):
one local optimizer step ``s`` of the clients, with their optimizer state rows ``state``."""


def cross_entropy_objective(forward, flat, x, y, context) -> torch.Tensor:
    """The default local loss: cross-entropy of the client model on its minibatch."""
    return F.cross_entropy(forward(flat, x), y)


@dataclass
class LocalTask:
    """What the training clients of one round optimise locally (chosen by the strategy's
    ``configure_local``): the objective, per-client context rows, and the local optimizer.

    ``step=None`` is SGD with the strategy's local learning rate and weight decay; ``state`` is the
    per-client optimizer state (e.g. Adam moments), rows aligned with the training clients, returned
    updated in :class:`LocalResult` for the strategy to keep."""

    objective: Objective = cross_entropy_objective
    context: dict[str, torch.Tensor] = field(default_factory=dict)
    step: Step | None = None
    state: tuple[torch.Tensor, ...] = ()


@dataclass
class LocalResult:
    """Local training's outcome for the training clients (rows aligned with the task)."""

    pseudo_grads: torch.Tensor  # (C, d): (θ⁰ − θˢ) / η
    final: torch.Tensor  # (C, d): θˢ
    first_loss: torch.Tensor  # (C,): the loss of the first local step
    state: tuple[torch.Tensor, ...] = ()


class LocalTraining:
    """Runs ``steps`` local optimizer steps for a set of clients; see the module docstring.

    Args:
        net: the module whose forward defines the client model (its parameters are not used).
        layout: the flat layout of ``net``'s parameters.
        loss: ``loss(logits, labels) -> scalar`` (cross-entropy by default) for :meth:`run`.
        lr: local learning rate η; weight_decay: L2 coefficient added to the local gradient.
    """

    def __init__(
        self,
        net: nn.Module,
        layout: ParamLayout,
        lr: float,
        steps: int,
        weight_decay: float = 0.0,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        self.net = net
        self.layout = layout
        self.lr = float(lr)
        self.steps = int(steps)
        self.weight_decay = float(weight_decay)
        self.loss = loss or F.cross_entropy

    def forward(self, flat: torch.Tensor, x: torch.Tensor, **kwargs):
        """The client model with flat parameters ``flat`` applied to ``x``."""
        return functional_call(self.net, self.layout.unflatten(flat), (x,), kwargs)

    def client_loss(self, flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.loss(self.forward(flat, x), y)

    def sgd_step(self, params, grads, state, s):
        """Plain local SGD (with L2 weight decay): the default :data:`Step`."""
        if self.weight_decay:
            grads = grads + self.weight_decay * params
        return params - self.lr * grads, state

    def default_task(self) -> LocalTask:
        """The task of plain local training: ``loss`` (cross-entropy by default) with SGD."""
        return LocalTask(objective=lambda forward, flat, x, y, context: self.loss(forward(flat, x), y))

    def vectorized_task(self, start, xs, ys, task: LocalTask) -> LocalResult:
        """``start (C, d)``, ``xs (C, S, B, ...)``, ``ys (C, S, B)``: all clients step together under
        ``vmap`` (the objective must be vmappable)."""
        step = task.step or self.sgd_step

        def value(flat, x, y, context):
            return task.objective(self.forward, flat, x, y, context)

        batched = vmap(grad_and_value(value))
        params, state, first_loss = start, tuple(task.state), None
        for s in range(self.steps):
            grads, losses = batched(params, xs[:, s], ys[:, s], task.context)
            first_loss = losses if first_loss is None else first_loss
            params, state = step(params, grads, state, s)
        return LocalResult((start - params) / self.lr, params, first_loss, state)

    def sequential_task(self, start, xs, ys, task: LocalTask) -> LocalResult:
        """Same inputs and outputs as :meth:`vectorized_task`, one client at a time."""
        step = task.step or self.sgd_step
        final = torch.empty_like(start)
        first_loss = torch.empty(start.shape[0], dtype=start.dtype, device=start.device)
        states = [torch.empty_like(t) for t in task.state]
        for i in range(start.shape[0]):
            context = {k: v[i] for k, v in task.context.items()}
            params, state = start[i : i + 1], tuple(t[i : i + 1] for t in task.state)
            for s in range(self.steps):
                leaf = params[0].detach().requires_grad_(True)
                loss = task.objective(self.forward, leaf, xs[i, s], ys[i, s], context)
                (grad,) = torch.autograd.grad(loss, leaf)
                if s == 0:
                    first_loss[i] = loss.detach()
                params, state = step(params, grad.unsqueeze(0), state, s)
            final[i] = params[0].detach()
            for out, value in zip(states, state, strict=True):
                out[i] = value[0]
        return LocalResult((start - final) / self.lr, final, first_loss, tuple(states))

    def run_task(self, execution: str, start, xs, ys, task: LocalTask | None = None) -> LocalResult:
        return getattr(self, f"{execution}_task")(start, xs, ys, task or self.default_task())

    def vectorized(self, start: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor):
        """``start (C, d)``, ``xs (C, S, B, ...)``, ``ys (C, S, B)`` → (pseudo-gradients (C, d), first-step losses (C,))."""
        result = self.vectorized_task(start, xs, ys, self.default_task())
        return result.pseudo_grads, result.first_loss

    def sequential(self, start: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor):
        """Same inputs and outputs as :meth:`vectorized`, one client at a time."""
        result = self.sequential_task(start, xs, ys, self.default_task())
        return result.pseudo_grads, result.first_loss

    def run(self, execution: str, start: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor):
        return getattr(self, execution)(start, xs, ys)
