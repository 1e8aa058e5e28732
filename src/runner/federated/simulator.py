"""Local training of many clients, two execution paths with identical math.

Both paths run, for every training client ``i`` of a round, ``Sᵢ`` local SGD steps from its start
point ``θᵢ⁰`` on minibatches drawn from its own preloaded data, and return the pseudo-gradient
``(θᵢ⁰ − θᵢˢ) / η`` (``= ∇fᵢ(θᵢ⁰; ξ)`` when ``S = 1``; FedAvg's model delta divided by the local
learning rate otherwise).

Step counts: either one ``S`` for every client (``local_steps``: minibatches drawn with replacement,
:meth:`ClientData.sample_indices`) or ``E`` local epochs over each client's own data
(``local_epochs``, as the FL papers train: :meth:`ClientData.epoch_indices`), so that a client with
``nᵢ`` samples takes ``Sᵢ = ⌈E · ⌈nᵢ / B⌉⌉`` steps. Per-client counts (``client_steps``) are honoured
by both paths: the sequential loop runs each client's own count; the batched path steps every client
``max Sᵢ`` times and masks the clients that have finished (their parameters, optimizer state and
buffers stay as they were).

Running statistics (BatchNorm): a model's floating-point buffers (:class:`BufferLayout`) are part of
each client's state. Local training runs the model in train mode on a copy of the client's buffers,
which the forward pass updates (momentum update of ``running_mean`` / ``running_var``), and returns
them functionally (``LocalResult.buffers``; in the batched path as the ``has_aux`` output of
``grad_and_value``); evaluation runs the module in eval mode with the client's (or the global)
buffers. Integer buffers (``num_batches_tracked``) are given as fresh zeros in every call and never
kept: BatchNorm with ``momentum=None`` (a cumulative average that needs the counter) is refused.

* **vectorized**: ``torch.func.vmap`` of ``grad_and_value`` over stacked flat client parameters and
  ``functional_call`` of one module; all clients step together (one batched computation on a GPU).
* **sequential**: a tight loop over clients reusing the same module and the same preloaded device
  tensors (no per-client DataLoader, no model copy); gradients by ``torch.autograd.grad``.

``execution="auto"`` picks vectorized on CUDA and sequential elsewhere (design.md: on 2 CPU cores vmap
measured 3× slower than the loop; on an H100 21× faster at 100 clients).

Parameters travel as one flat vector (``ParamLayout``), buffers as another (``BufferLayout``).
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
    "BufferLayout",
    "ClientData",
    "LocalResult",
    "LocalTask",
    "LocalTraining",
    "ParamLayout",
    "cross_entropy_objective",
    "epoch_steps",
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
        self._set(list(module.named_parameters()))

    def _set(self, named: list[tuple[str, torch.Tensor]]) -> None:
        self.names = [n for n, _ in named]
        self.shapes = [tuple(p.shape) for _, p in named]
        self.numels = [p.numel() for _, p in named]
        self.dim = int(sum(self.numels))

    def flatten(self, params) -> torch.Tensor:
        return torch.cat([p.reshape(-1) for p in params])

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        pieces = torch.split(flat, self.numels, dim=-1)
        lead = flat.shape[:-1]
        return {n: t.reshape(*lead, *s) for n, t, s in zip(self.names, pieces, self.shapes, strict=True)}

    def mask(self, patterns: list[str]) -> torch.Tensor:
        """Boolean ``(dim,)`` mask of the coordinates of tensors whose name contains a pattern."""
        parts = [
            torch.full((k,), any(p in n for p in patterns))
            for n, k in zip(self.names, self.numels, strict=True)
        ]
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.bool)


class BufferLayout(ParamLayout):
    """The floating-point buffers of a module (BatchNorm's ``running_mean`` / ``running_var``) in one
    flat vector, plus the names of its integer buffers (``num_batches_tracked``), which
    :meth:`functional` fills with fresh zeros (module docstring)."""

    def __init__(self, module: nn.Module) -> None:
        named = list(module.named_buffers())
        self._set([(n, b) for n, b in named if b.is_floating_point()])
        self.counters = {n: (tuple(b.shape), b.dtype) for n, b in named if not b.is_floating_point()}
        cumulative = [
            n
            for n, m in module.named_modules()
            if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats and m.momentum is None
        ]
        if cumulative:
            raise invalid_value(
                "model",
                type(module).__name__,
                f"has BatchNorm layers with momentum=None ({cumulative[:3]}): their cumulative average needs "
                "a per-client batch counter the FL engine does not keep; give them a momentum (e.g. 0.1)",
            )

    def of(self, module: nn.Module) -> torch.Tensor:
        """The module's current float buffers as one flat vector (``(0,)`` when it has none)."""
        buffers = dict(module.named_buffers())
        if not self.names:
            return torch.zeros(0, device=next(iter(module.parameters())).device)
        return self.flatten([buffers[n].detach() for n in self.names])

    def functional(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{name: tensor}`` for ``functional_call``: views of ``flat`` (outside ``vmap``, in-place
        running-statistics updates land in ``flat``) and fresh zero counters."""
        tensors = self.unflatten(flat) if self.names else {}
        tensors.update(self.fresh_counters(flat.device))
        return tensors

    def fresh_counters(self, device) -> dict[str, torch.Tensor]:
        """Zero integer buffers (``num_batches_tracked``), new tensors for every call."""
        return {
            n: torch.zeros(shape, dtype=dtype, device=device) for n, (shape, dtype) in self.counters.items()
        }


def epoch_steps(sizes: torch.Tensor, epochs: float, batch_size: int) -> torch.Tensor:
    """``(C,)`` local steps of ``epochs`` epochs over clients of ``sizes`` samples at ``batch_size``:
    ``⌈E · ⌈n / B⌉⌉`` (a DataLoader without ``drop_last`` gives ``⌈n / B⌉`` batches per epoch)."""
    per_epoch = torch.div(sizes + batch_size - 1, batch_size, rounding_mode="floor")
    return torch.ceil(float(epochs) * per_epoch.double() - 1e-9).long().clamp_min(1)


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

    def epoch_indices(
        self,
        clients: torch.Tensor,
        epochs: float,
        batch_size: int,
        generator: torch.Generator,
        extra_steps: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(indices (C, S_max, B), steps (C,))`` for ``epochs`` local epochs over each client's data.

        Every epoch is a fresh random permutation of the client's samples cut into ``⌈n / B⌉``
        minibatches (a shuffled DataLoader); the last, partial minibatch of an epoch is filled up with
        the epoch's first samples, so that every minibatch has ``B`` rows (one shape for the batched
        path; documented deviation from a ragged last batch). Client ``k`` takes
        ``steps[k] = ⌈E · ⌈n_k / B⌉⌉`` steps (:func:`epoch_steps`); rows beyond ``steps[k]`` are
        valid indices of the client that the training loop masks. ``extra_steps`` more steps per
        client continue the stream into further epochs (e.g. FedRep's head phase before its body
        epochs). Uniforms come from ``generator`` on the CPU, as in :meth:`sample_indices`."""
        sizes = self.sizes.cpu()[clients.cpu()]
        count, batch = len(clients), int(batch_size)
        per_epoch = torch.div(sizes + batch - 1, batch, rounding_mode="floor")
        steps = epoch_steps(sizes, epochs, batch) + int(extra_steps)
        full = max(
            1, int(torch.div(steps + per_epoch - 1, per_epoch, rounding_mode="floor").max()) if count else 1
        )
        longest = int(sizes.max()) if count else 1
        keys = torch.rand(count, full, longest, generator=generator, dtype=torch.float64)
        keys.masked_fill_(torch.arange(longest) >= sizes.view(-1, 1, 1), 2.0)  # padding sorts last
        perm = keys.argsort(dim=-1)  # (C, E, n_max): first n_k entries permute [0, n_k)
        total = int(steps.max()) if count else 0
        s = torch.arange(total)
        epoch = torch.div(s.view(1, -1), per_epoch.view(-1, 1), rounding_mode="floor").clamp_max(full - 1)
        within = s.view(1, -1) % per_epoch.view(-1, 1)  # (C, S)
        position = (within.unsqueeze(-1) * batch + torch.arange(batch)) % sizes.view(-1, 1, 1)
        local = perm[torch.arange(count).view(-1, 1, 1), epoch.unsqueeze(-1), position]
        local = local.to(self.order.device)
        index = self.order[self.offsets[clients].view(-1, 1, 1) + local]
        return index, steps.to(self.sizes.device)


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
    buffers: torch.Tensor | None = None  # (C, d_b): running statistics after training (None: no buffers)


class LocalTraining:
    """Runs local optimizer steps for a set of clients; see the module docstring.

    Args:
        net: the module whose forward defines the client model (its parameters and buffers are not used).
        layout: the flat layout of ``net``'s parameters.
        lr: local learning rate η; weight_decay: L2 coefficient added to the local gradient.
        steps: local steps (the maximum over the clients when per-client ``client_steps`` are given).
        loss: ``loss(logits, labels) -> scalar`` (cross-entropy by default) for :meth:`run`.
        buffers: the flat layout of ``net``'s float buffers (built from ``net`` when None).

    The ``*_task`` methods take ``client_steps`` (``(C,)`` step counts, ≤ ``steps``; None = ``steps``
    for every client) and ``buffers`` (``(C, d_b)`` start running statistics; None = ``net``'s own).
    """

    def __init__(
        self,
        net: nn.Module,
        layout: ParamLayout,
        lr: float,
        steps: int,
        weight_decay: float = 0.0,
        loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        buffers: BufferLayout | None = None,
    ) -> None:
        self.net = net
        self.layout = layout
        self.lr = float(lr)
        self.steps = int(steps)
        self.weight_decay = float(weight_decay)
        self.loss = loss or F.cross_entropy
        self.buffer_layout = buffers if buffers is not None else BufferLayout(net)

    def forward(self, flat: torch.Tensor, x: torch.Tensor, buffers: torch.Tensor | None = None, **kwargs):
        """The client model with flat parameters ``flat`` (and flat buffers ``buffers``) applied to ``x``."""
        tensors = self.layout.unflatten(flat)
        if buffers is not None:
            tensors.update(self.buffer_layout.functional(buffers))
        return functional_call(self.net, tensors, (x,), kwargs)

    def tracking_forward(self, buffers: torch.Tensor):
        """``(forward, after)``: a :data:`Objective`'s ``forward`` whose every call runs on a fresh copy
        of ``buffers``; ``after()`` gives the buffers as the *first* call left them (the objective's
        first forward is the client's own model; further calls, e.g. MOON's global / previous models
        or APFL's mixture, leave the client's statistics alone), or ``buffers`` if nothing ran."""
        first: list[torch.Tensor] = []

        def forward(flat, x, **kwargs):
            # separate tensors, not views of one vector: under vmap an in-place update of a view does
            # not reach its base
            pieces = {n: t.clone() for n, t in self.buffer_layout.unflatten(buffers).items()}
            counters = self.buffer_layout.fresh_counters(buffers.device)
            out = functional_call(
                self.net, {**self.layout.unflatten(flat), **pieces, **counters}, (x,), kwargs
            )
            if not first:
                first.append(self.buffer_layout.flatten(pieces.values()) if pieces else buffers)
            return out

        return forward, lambda: first[0] if first else buffers

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

    def _start_buffers(self, start: torch.Tensor, buffers: torch.Tensor | None) -> torch.Tensor:
        if buffers is not None:
            return buffers
        own = self.buffer_layout.of(self.net).to(start.device)
        return own.expand(start.shape[0], -1).clone()

    def _step_counts(self, start: torch.Tensor, client_steps: torch.Tensor | None) -> torch.Tensor | None:
        if client_steps is None:
            return None
        counts = client_steps.to(start.device).long()
        if counts.shape != (start.shape[0],) or bool((counts < 1).any()) or bool((counts > self.steps).any()):
            raise ValueError(f"client_steps must be {start.shape[0]} counts in [1, {self.steps}]")
        return counts

    def vectorized_task(self, start, xs, ys, task: LocalTask, client_steps=None, buffers=None) -> LocalResult:
        """``start (C, d)``, ``xs (C, S, B, ...)``, ``ys (C, S, B)``: all clients step together under
        ``vmap`` (the objective must be vmappable); a client past its ``client_steps`` is masked."""
        step = task.step or self.sgd_step
        counts = self._step_counts(start, client_steps)
        tracked = self.buffer_layout.dim > 0 or bool(self.buffer_layout.counters)

        def value(flat, buf, x, y, context):
            if not tracked:
                return task.objective(self.forward, flat, x, y, context), buf
            forward, after = self.tracking_forward(buf)
            loss = task.objective(forward, flat, x, y, context)
            return loss, after()

        batched = vmap(grad_and_value(value, has_aux=True))
        bufs = self._start_buffers(start, buffers)
        params, state, first_loss = start, tuple(task.state), None
        for s in range(self.steps):
            grads, (losses, new_bufs) = batched(params, bufs, xs[:, s], ys[:, s], task.context)
            first_loss = losses if first_loss is None else first_loss
            new_params, new_state = step(params, grads, state, s)
            if counts is None:
                params, state, bufs = new_params, new_state, new_bufs
            else:
                active = counts > s

                def keep(new, old, active=active):
                    return torch.where(active.view(-1, *([1] * (new.dim() - 1))), new, old)

                params, bufs = keep(new_params, params), keep(new_bufs, bufs)
                state = tuple(keep(n, o) for n, o in zip(new_state, state, strict=True))
        return LocalResult((start - params) / self.lr, params, first_loss, state, bufs if tracked else None)

    def sequential_task(self, start, xs, ys, task: LocalTask, client_steps=None, buffers=None) -> LocalResult:
        """Same inputs and outputs as :meth:`vectorized_task`, one client at a time (each runs its
        own step count)."""
        step = task.step or self.sgd_step
        counts = self._step_counts(start, client_steps)
        counts = [self.steps] * start.shape[0] if counts is None else counts.tolist()
        tracked = self.buffer_layout.dim > 0 or bool(self.buffer_layout.counters)
        bufs = self._start_buffers(start, buffers)
        final = torch.empty_like(start)
        final_bufs = torch.empty_like(bufs)
        first_loss = torch.empty(start.shape[0], dtype=start.dtype, device=start.device)
        states = [torch.empty_like(t) for t in task.state]
        for i in range(start.shape[0]):
            context = {k: v[i] for k, v in task.context.items()}
            params, state = start[i : i + 1], tuple(t[i : i + 1] for t in task.state)
            buf = bufs[i]
            for s in range(counts[i]):
                leaf = params[0].detach().requires_grad_(True)
                if tracked:
                    forward, after = self.tracking_forward(buf)
                    loss = task.objective(forward, leaf, xs[i, s], ys[i, s], context)
                    buf = after().detach()
                else:
                    loss = task.objective(self.forward, leaf, xs[i, s], ys[i, s], context)
                (grad,) = torch.autograd.grad(loss, leaf)
                if s == 0:
                    first_loss[i] = loss.detach()
                params, state = step(params, grad.unsqueeze(0), state, s)
            final[i] = params[0].detach()
            final_bufs[i] = buf
            for out, value in zip(states, state, strict=True):
                out[i] = value[0]
        return LocalResult(
            (start - final) / self.lr, final, first_loss, tuple(states), final_bufs if tracked else None
        )

    def run_task(
        self,
        execution: str,
        start,
        xs,
        ys,
        task: LocalTask | None = None,
        client_steps: torch.Tensor | None = None,
        buffers: torch.Tensor | None = None,
    ) -> LocalResult:
        """Local training by ``execution`` (``vectorized`` | ``sequential``); see the ``*_task`` methods."""
        run = getattr(self, f"{execution}_task")
        return run(start, xs, ys, task or self.default_task(), client_steps=client_steps, buffers=buffers)

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
