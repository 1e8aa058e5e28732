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
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad_and_value, vmap

from runner.errors import invalid_value

__all__ = ["EXECUTIONS", "ClientData", "LocalTraining", "ParamLayout", "resolve_execution"]

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


class LocalTraining:
    """Runs ``steps`` local SGD steps for a set of clients; see the module docstring.

    Args:
        net: the module whose forward defines the client model (its parameters are not used).
        layout: the flat layout of ``net``'s parameters.
        loss: ``loss(logits, labels) -> scalar`` (cross-entropy by default).
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

    def client_loss(self, flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = functional_call(self.net, self.layout.unflatten(flat), (x,))
        return self.loss(logits, y)

    def _step(self, flat, grad):
        if self.weight_decay:
            grad = grad + self.weight_decay * flat
        return flat - self.lr * grad

    def vectorized(self, start: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor):
        """``start (C, d)``, ``xs (C, S, B, ...)``, ``ys (C, S, B)`` → (pseudo-gradients (C, d), first-step losses (C,))."""
        batched = vmap(grad_and_value(self.client_loss))
        params = start
        first_loss = None
        for s in range(self.steps):
            grads, losses = batched(params, xs[:, s], ys[:, s])
            first_loss = losses if first_loss is None else first_loss
            params = self._step(params, grads)
        return (start - params) / self.lr, first_loss

    def sequential(self, start: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor):
        """Same inputs and outputs as :meth:`vectorized`, one client at a time."""
        out = torch.empty_like(start)
        first_loss = torch.empty(start.shape[0], dtype=start.dtype, device=start.device)
        for i in range(start.shape[0]):
            params = start[i]
            for s in range(self.steps):
                leaf = params.detach().requires_grad_(True)
                loss = self.client_loss(leaf, xs[i, s], ys[i, s])
                (grad,) = torch.autograd.grad(loss, leaf)
                if s == 0:
                    first_loss[i] = loss.detach()
                params = self._step(params, grad)
            out[i] = (start[i] - params) / self.lr
        return out, first_loss

    def run(self, execution: str, start: torch.Tensor, xs: torch.Tensor, ys: torch.Tensor):
        return getattr(self, execution)(start, xs, ys)
