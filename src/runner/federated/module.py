"""The LightningModule of federated experiments: one training step = one communication round.

Lightning mapping (documented choice): the training "batch" is the round index; an epoch is
``dataset.rounds_per_epoch`` rounds (:class:`~runner.federated.datamodule.FederatedDataModule`); the
server update is one optimizer step, so ``trainer.global_step`` counts rounds and
``trainer.max_steps`` caps them, while ``trainer.max_epochs × rounds_per_epoch`` sets the total.
Validation (the global model on the global test set: ``val/acc``, ``val/loss``) runs at the end of
every epoch, i.e. every ``rounds_per_epoch`` rounds; per-round training metrics go to the loggers
at every step (``log_every_n_steps``). When the datamodule gives each client a test split, every
client's personalised model (``strategy.client_evaluation_parameters``) is evaluated on it too:
``val/personal_acc`` (mean over clients), ``val/personal_acc_weighted`` (over samples), and at test
time ``client_test_acc.csv`` per client. At test time the tested models are also measured on the
training partitions the clients train on (``train/acc``: the global model on all of them together;
``train/personal_acc``: each personalised model on its own), so that a table shows whether its schedule
fits the training data (issue 16), and ``test/personal_majority_acc``: each client always predicting
its most frequent training class, the trivial level that label skew alone gives personalised accuracy
(:func:`majority_class_accuracy`). With class groups (long tail), ``*/acc_{many,medium,few}``
are the mean per-class accuracies of each group.

Under DDP (``trainer=ddp_sim`` or ``ddp``), every rank plans the same round (the plan is a function of
(seed, round)); the training participants are split across the ranks, each rank trains its share,
and the results are all-gathered in participant order, so the aggregate equals the single-process one.

Checkpoints hold the round (Lightning's loop state), the global model, the server optimizer
(momentum), the strategy's client state and server buffers (module state dict) and the RNG states
(``RNGStateCallback``). All per-round randomness comes from a generator seeded by (seed, round), so
``resume=auto`` continues exactly as an uninterrupted run.

A non-finite honest update fails the round with the round and client ids (:class:`NonFiniteUpdate`).

Local work per round follows the strategy's unit: ``local_epochs`` over each client's own data (step
counts differ by client; :meth:`FederatedModule.local_batches`) or ``local_steps`` for every client.
BatchNorm running statistics are client state (see :mod:`runner.federated.simulator`): the global
model's buffers hold the shared ones, the strategy's client state the personal ones; every evaluation
runs the network in eval mode with the evaluated model's statistics (never the test batch's).

Validation vs test: with a datamodule that holds out a validation split
(``dataset.val_fraction > 0``), ``val/*`` (global and personalised) is measured on it and ``test/*``
on the test split, so the best round (``test_ckpt=best``) is chosen without looking at the test data.
"""

from __future__ import annotations

import csv
import logging
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from runner.errors import UserError

from .simulator import (
    BufferLayout,
    ClientData,
    LocalResult,
    LocalTask,
    LocalTraining,
    ParamLayout,
    resolve_execution,
)
from .strategy import Strategy

log = logging.getLogger("runner.federated")

__all__ = ["FederatedModule", "NonFiniteUpdate", "majority_class_accuracy"]


class NonFiniteUpdate(RuntimeError):
    """An honest client's update contained NaN or inf."""


@torch.no_grad()
def majority_class_accuracy(train: ClientData, test: ClientData) -> torch.Tensor:
    """``(K,)`` accuracy on client ``k``'s ``test`` samples of always predicting the most frequent class
    of its ``train`` samples (ties: the smallest class id; a client without training samples scores 0).
    The trivial baseline of personalised accuracy: what label skew alone gives (issue 16; about 0.6-0.7
    under Dirichlet(0.1) on the CIFAR-10 twin, 0.3 under Dirichlet(0.5))."""
    correct = torch.zeros(test.num_clients, device=test.y.device)
    for k in range(test.num_clients):
        labels = train.y[train.indices_of(k)]
        if labels.numel():
            correct[k] = (test.y[test.indices_of(k)] == torch.bincount(labels).argmax()).sum()
    return correct / test.sizes.to(correct.device).clamp_min(1)


class FederatedModule(L.LightningModule):
    """Federated training of ``net`` with ``strategy`` on the datamodule's clients.

    Args:
        net: the global model (its parameters are the server's model).
        strategy: a :class:`~runner.federated.strategy.Strategy` (config group ``fl_strategy``).
        num_classes: number of classes (metrics, label flipping).
        execution: ``auto`` | ``vectorized`` | ``sequential`` (see :mod:`runner.federated.simulator`).
        seed: seeds the per-round generators and the Byzantine set.
    """

    def __init__(
        self,
        net: nn.Module,
        strategy: Strategy | None,
        num_classes: int,
        execution: str = "auto",
        seed: int = 0,
    ) -> None:
        super().__init__()
        if strategy is None:
            raise UserError("method=federated needs an FL strategy: add fl_strategy=<name> (e.g. fedavg)")
        self.save_hyperparameters(ignore=["net", "strategy"])
        self.automatic_optimization = False
        self.net = net
        self.strategy = strategy
        self.layout = ParamLayout(net)
        self.buffer_layout = BufferLayout(net)
        self.num_classes = int(num_classes)
        self.execution = execution
        resolve_execution(execution, torch.device("cpu"))  # validate the name early
        self.seed = int(seed)
        self.val_acc = MulticlassAccuracy(num_classes=self.num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes=self.num_classes, average="micro")
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()
        self.val_class_acc = MulticlassAccuracy(num_classes=self.num_classes, average=None)
        self.test_class_acc = MulticlassAccuracy(num_classes=self.num_classes, average=None)
        self.client_data: ClientData | None = None
        self.client_test: ClientData | None = None
        self.client_val: ClientData | None = None
        self.class_groups: dict[str, list[int]] | None = None
        self.eval_batch_size = 1000
        self._eval_params: torch.Tensor | None = None
        self._eval_buffers: torch.Tensor | None = None
        self.client_sizes: torch.Tensor | None = None
        self._ready = False

    # ---- setup -----------------------------------------------------------------------------------
    def global_flat(self) -> torch.Tensor:
        return self.layout.flatten([p.detach() for p in self.net.parameters()])

    @torch.no_grad()
    def set_global_flat(self, flat: torch.Tensor) -> None:
        """Overwrite the global model's parameters with ``flat`` (server-side updates)."""
        for param, value in zip(self.net.parameters(), self.layout.unflatten(flat).values(), strict=True):
            param.copy_(value)

    def global_buffers(self) -> torch.Tensor:
        """The global model's running statistics as one flat vector (``(0,)`` without BatchNorm)."""
        return self.buffer_layout.of(self.net)

    @torch.no_grad()
    def set_global_buffers(self, flat: torch.Tensor) -> None:
        """Overwrite the global model's running statistics with ``flat``."""
        if self.buffer_layout.dim == 0:
            return
        own = dict(self.net.named_buffers())
        for name, value in self.buffer_layout.unflatten(flat).items():
            own[name].copy_(value)

    def forward_flat(
        self, flat: torch.Tensor, x: torch.Tensor, buffers: torch.Tensor | None = None, **kwargs
    ):
        """The model with flat parameters ``flat`` (and flat running statistics ``buffers``; None =
        the global model's) on ``x``, in the network's current mode (``return_features=True`` where
        the model supports it gives ``(logits, features)``). The statistics are copied first, so a
        call in train mode changes no stored state."""
        stats = self.global_buffers() if buffers is None else buffers
        tensors = {**self.layout.unflatten(flat), **self.buffer_layout.functional(stats.clone())}
        return torch.func.functional_call(self.net, tensors, (x,), kwargs)

    @contextmanager
    def eval_mode(self):
        """The network in eval mode (BatchNorm normalises with running statistics) inside the block."""
        was = self.net.training
        self.net.eval()
        try:
            yield
        finally:
            self.net.train(was)

    def prepare(self, datamodule) -> None:
        """Take the clients' data from ``datamodule`` and set the strategy up (idempotent).

        Called by Lightning's ``setup``; scripts driving rounds without a Trainer call it directly."""
        if self._ready:
            return
        datamodule.setup("fit")
        self.client_data = datamodule.client_data()
        self.client_sizes = self.client_data.sizes.clone()
        self.client_test = getattr(datamodule, "client_test_data", lambda: None)()
        self.client_val = getattr(datamodule, "client_val_data", lambda: None)()
        self.class_groups = getattr(datamodule, "class_groups", lambda: None)()
        self.eval_batch_size = int(getattr(datamodule, "eval_batch_size", self.eval_batch_size))
        personal = self.layout.mask(self.strategy.personal_parameters)
        self.strategy.setup(self.client_data.num_clients, self.global_flat().cpu(), personal, self.seed)
        self.strategy.setup_buffers(self.buffer_layout, self.global_buffers().cpu())
        self._ready = True

    def setup(self, stage: str) -> None:
        if self._ready:
            return
        self.prepare(self.trainer.datamodule)
        if self.trainer.is_global_zero:
            self._save_class_counts(self.trainer.datamodule)

    def _save_class_counts(self, datamodule) -> None:
        table = datamodule.class_counts()
        out = Path(self.trainer.default_root_dir) / "client_class_counts.csv"
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(out, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["client", "byzantine", *[f"class_{c}" for c in range(table.shape[1])], "total"])
            byzantine = getattr(self.strategy, "is_byzantine", torch.zeros(len(table), dtype=torch.bool))
            for k, row in enumerate(table):
                writer.writerow([k, int(byzantine[k]), *row.tolist(), int(row.sum())])
        sizes = table.sum(1)
        log.info(
            "%d clients, %d-%d samples each (median %d); per-client class counts in %s",
            len(table),
            sizes.min(),
            sizes.max(),
            int(sorted(sizes)[len(sizes) // 2]),
            out,
        )

    def _move_data(self) -> None:
        self.client_data = self.client_data.to(self.device)
        self.client_sizes = self.client_sizes.to(self.device)
        if self.client_test is not None:
            self.client_test = self.client_test.to(self.device)
        if self.client_val is not None:
            self.client_val = self.client_val.to(self.device)

    def on_fit_start(self) -> None:
        self._move_data()

    def on_test_start(self) -> None:
        self._move_data()

    def local_training(self, steps: int | None = None, lr: float | None = None) -> LocalTraining:
        """The simulator for ``steps`` (maximum) local steps at ``lr`` (defaults: the strategy's)."""
        s = self.strategy
        if steps is None:
            if s.local_steps is None:
                raise ValueError("local_training(steps=None) needs fl_strategy.local_steps; pass steps")
            steps = s.local_steps
        return LocalTraining(
            self.net,
            self.layout,
            s.local_lr if lr is None else lr,
            steps,
            s.local_weight_decay,
            buffers=self.buffer_layout,
        )

    def local_batches(
        self, clients: torch.Tensor, generator: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``(xs (C, S, B, ...), ys (C, S, B), steps (C,) or None)``: one round's local minibatches of
        ``clients`` in the strategy's unit: ``local_epochs`` epochs over each client's own data, plus
        the strategy's ``extra_local_steps`` (``steps`` the per-client counts, ``S`` their maximum), or
        ``local_steps`` steps for every client (``steps`` None)."""
        s = self.strategy
        if s.local_epochs is None:
            xs, ys = self.client_batches(clients, generator)
            return xs, ys, None
        idx, steps = self.client_data.epoch_indices(
            clients, s.local_epochs, s.batch_size, generator, extra_steps=s.extra_local_steps
        )
        return self.client_data.x[idx], self.client_data.y[idx], steps

    def client_batches(
        self,
        clients: torch.Tensor,
        generator: torch.Generator,
        steps: int | None = None,
        batch_size: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(xs (C, S, B, ...), ys (C, S, B))``: minibatches of ``clients`` for ``S`` local steps
        (``steps``; default ``local_steps``), drawn with replacement. For the strategy's own unit
        (epochs or steps) use :meth:`local_batches`."""
        s = self.strategy
        if steps is None:
            if s.local_steps is None:
                raise ValueError(
                    "client_batches(steps=None) needs fl_strategy.local_steps; use local_batches"
                )
            steps = s.local_steps
        idx = self.client_data.sample_indices(clients, steps, batch_size or s.batch_size, generator)
        return self.client_data.x[idx], self.client_data.y[idx]

    def train_clients(
        self,
        start: torch.Tensor,
        xs: torch.Tensor,
        ys: torch.Tensor,
        task: LocalTask | None = None,
        execution: str | None = None,
        steps: int | torch.Tensor | None = None,
        lr: float | None = None,
        buffers: torch.Tensor | None = None,
    ) -> LocalResult:
        """Local training of the clients whose start points / batches are the rows of ``start`` /
        ``xs`` / ``ys``; split across the ranks under DDP (module docstring).

        ``steps``: an int (every client), a ``(C,)`` tensor of per-client counts (≤ ``xs.shape[1]``),
        or None (``xs.shape[1]`` steps). ``buffers``: ``(C, d_b)`` start running statistics (None =
        the global model's for every client); the result's ``buffers`` are the trained ones."""
        execution = resolve_execution(execution or self.execution, self.device)
        client_steps = steps if isinstance(steps, torch.Tensor) else None
        count = int(xs.shape[1]) if steps is None or client_steps is not None else int(steps)
        training = self.local_training(count, lr)
        if buffers is None and self.buffer_layout.dim:
            buffers = self.global_buffers().expand(start.shape[0], -1).clone()
        world = self.trainer.world_size if self._trainer is not None else 1
        if world == 1 or start.shape[0] < 2:
            return training.run_task(execution, start, xs, ys, task, client_steps, buffers)
        return self._train_distributed(training, execution, start, xs, ys, task, world, client_steps, buffers)

    def _train_distributed(
        self, training, execution, start, xs, ys, task, world, client_steps=None, buffers=None
    ) -> LocalResult:
        rank = self.trainer.global_rank
        task = task or training.default_task()
        count = start.shape[0]
        bounds = [count * r // world for r in range(world + 1)]
        mine = slice(bounds[rank], bounds[rank + 1])
        share = LocalTask(
            task.objective,
            {k: v[mine] for k, v in task.context.items()},
            task.step,
            tuple(t[mine] for t in task.state),
        )
        local = training.run_task(
            execution,
            start[mine],
            xs[mine],
            ys[mine],
            share,
            None if client_steps is None else client_steps[mine],
            None if buffers is None else buffers[mine],
        )
        width = max(bounds[r + 1] - bounds[r] for r in range(world))

        def gather(t: torch.Tensor) -> torch.Tensor:
            padded = torch.zeros((width, *t.shape[1:]), dtype=t.dtype, device=t.device)
            padded[: t.shape[0]] = t
            stacked = self.all_gather(padded)  # (world, width, ...)
            return torch.cat([stacked[r, : bounds[r + 1] - bounds[r]] for r in range(world)])

        return LocalResult(
            gather(local.pseudo_grads),
            gather(local.final),
            gather(local.first_loss),
            tuple(gather(t) for t in local.state),
            None if local.buffers is None else gather(local.buffers),
        )

    # ---- one round -------------------------------------------------------------------------------
    def run_round(self, round_index: int, execution: str | None = None) -> dict[str, torch.Tensor]:
        """Plan, train clients, forge Byzantine messages, aggregate; returns the direction and stats."""
        strategy = self.strategy
        plan = strategy.configure_train(round_index, self.global_flat())
        attack = strategy.attack
        trains = ~plan.byzantine | attack.needs_training
        rows = torch.arange(len(plan.clients), device=plan.clients.device)[trains]
        clients = plan.clients[rows]
        xs, ys, steps = self.local_batches(clients, plan.generator)
        poisoned = plan.byzantine[rows].view(-1, 1, 1)
        ys = torch.where(poisoned, attack.poison_labels(ys, self.num_classes), ys)
        task = strategy.configure_local(self, plan, rows)
        global_buffers = self.global_buffers()
        buffers = strategy.start_buffers(plan, rows, global_buffers) if self.buffer_layout.dim else None
        result = self.train_clients(plan.start[rows], xs, ys, task, execution, steps=steps, buffers=buffers)
        losses = result.first_loss
        messages = strategy.client_messages(plan, rows, result.pseudo_grads, result)
        honest_rows = ~plan.byzantine[rows]
        honest = messages[honest_rows]
        finite = torch.isfinite(honest).all(dim=1)
        if not bool(finite.all()):
            bad = clients[honest_rows][~finite].tolist()
            raise NonFiniteUpdate(
                f"round {round_index}: honest client(s) {bad} sent a non-finite update (NaN/inf); "
                "lower fl_strategy.local_lr or check those clients' data"
            )
        own = messages[~honest_rows] if bool((~honest_rows).any()) else None
        forged = strategy.byzantine_messages(plan, honest, own)
        senders = torch.cat([clients[honest_rows], plan.clients[plan.byzantine]])
        stack = torch.cat([honest, forged])
        direction = strategy.aggregate_train(plan, stack, self.client_sizes[senders].to(stack.dtype))
        out = {"direction": direction, "honest_loss": losses[honest_rows].mean(), "honest": honest}
        if result.buffers is not None:  # Byzantine clients' statistics are not aggregated
            honest_clients = rows[honest_rows]
            out["buffers"] = strategy.aggregate_buffers(
                plan,
                honest_clients,
                result.buffers[honest_rows],
                self.client_sizes[plan.clients[honest_clients]],
                global_buffers,
            )
        return out

    def step_round(self, round_index: int, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
        """One whole round: :meth:`run_round`, the server optimizer's step along the aggregated
        direction, then the strategy's ``server_update``. The training step runs it with Lightning's
        optimizer; scripts driving rounds without a Trainer pass
        ``strategy.configure_server_optimizer(net.parameters())``."""
        out = self.run_round(round_index)
        optimizer.zero_grad()
        for param, grad in zip(
            self.net.parameters(), self.layout.unflatten(out["direction"]).values(), strict=True
        ):
            param.grad = grad.to(param.dtype).clone()
        optimizer.step()
        if "buffers" in out:
            self.set_global_buffers(out["buffers"])
        self.strategy.server_update(self, round_index)
        return out

    def training_step(self, batch, batch_idx: int) -> dict[str, torch.Tensor]:
        round_index = self.global_step
        out = self.step_round(round_index, self.optimizers())
        loss = out["honest_loss"]
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=1, sync_dist=True)
        self.log("fl/direction_norm", out["direction"].norm(), on_step=True, on_epoch=False, batch_size=1)
        self.log("fl/round", float(round_index + 1), on_step=True, on_epoch=False, batch_size=1)
        return {"loss": loss.detach(), "loss_terms": {"honest_ce": loss.detach()}}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.strategy.configure_server_optimizer(self.net.parameters())

    # ---- evaluation ------------------------------------------------------------------------------
    def _start_eval(self) -> None:
        self._eval_params = self.strategy.evaluation_parameters(self, self.global_flat())
        self._eval_buffers = self.strategy.evaluation_buffers(self, self.global_buffers())

    def _eval(self, batch, acc: MulticlassAccuracy, class_acc, loss_metric: MeanMetric) -> None:
        x, y = batch
        with self.eval_mode():
            logits = self.forward_flat(self._eval_params, x, buffers=self._eval_buffers)
        loss_metric.update(F.cross_entropy(logits, y), weight=len(y))
        acc.update(logits, y)
        if self.class_groups is not None:
            class_acc.update(logits, y)

    def _log_global(self, stage: str, acc, class_acc, loss_metric) -> None:
        self.log(f"{stage}/acc", acc.compute(), prog_bar=stage == "val", sync_dist=True)
        self.log(f"{stage}/loss", loss_metric.compute(), sync_dist=True)
        if self.class_groups is not None:
            per_class = class_acc.compute()
            for name, classes in self.class_groups.items():
                self.log(f"{stage}/acc_{name}", per_class[classes].mean(), sync_dist=True)
            class_acc.reset()
        acc.reset()
        loss_metric.reset()

    @torch.no_grad()
    def personalised_models(self, clients: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(params (K, P), buffers (K, Q))``: the personalised model of each of ``clients`` as the
        strategy evaluates it (its own parameters and running statistics; a strategy may fine-tune
        first, e.g. FedAvg-FT or Ditto)."""
        # gradients on, and out of the inference mode Lightning's val / test loops run in (enable_grad
        # alone does not leave it)
        with torch.inference_mode(False), torch.enable_grad():
            params = self.strategy.client_evaluation_parameters(self, clients, self.global_flat())
        return params, self.strategy.client_evaluation_buffers(self, clients, self.global_buffers())

    @torch.no_grad()
    def accuracy_per_client(
        self, params: torch.Tensor, buffers: torch.Tensor, data: ClientData
    ) -> torch.Tensor:
        """``(K,)`` accuracy of client ``k``'s model (``params[k]``, ``buffers[k]``, eval mode) on its
        own samples of ``data``."""
        correct = torch.zeros(data.num_clients, device=self.device)
        with self.eval_mode():
            for k in range(data.num_clients):
                for chunk in data.indices_of(k).split(self.eval_batch_size):
                    logits = self.forward_flat(params[k], data.x[chunk], buffers=buffers[k])
                    correct[k] += (logits.argmax(-1) == data.y[chunk]).sum()
        return correct / data.sizes.to(correct.device).clamp_min(1)

    def personalised_accuracy(self, data: ClientData | None = None) -> torch.Tensor:
        """``(K,)`` accuracy of each client's personalised model on its own split of ``data`` (default:
        the test splits)."""
        data = self.client_test if data is None else data
        params, buffers = self.personalised_models(torch.arange(data.num_clients, device=self.device))
        return self.accuracy_per_client(params, buffers, data)

    @torch.no_grad()
    def global_training_accuracy(self) -> torch.Tensor:
        """Accuracy of the evaluated global model on every client's training partition together (the
        samples local training draws from; validation hold-outs excluded). Logged at test time as
        ``train/acc``, so that a table shows whether a schedule fits its training data (issue 16)."""
        data = self.client_data
        correct = torch.zeros((), device=self.device)
        with self.eval_mode():
            for chunk in data.order.split(self.eval_batch_size):
                logits = self.forward_flat(self._eval_params, data.x[chunk], buffers=self._eval_buffers)
                correct += (logits.argmax(-1) == data.y[chunk]).sum()
        return correct / max(len(data.order), 1)

    def _log_mean_accuracy(
        self, name: str, acc: torch.Tensor, sizes: torch.Tensor, prog_bar: bool = False
    ) -> None:
        """``<name>`` (mean over clients) and ``<name>_weighted`` (mean over samples)."""
        sizes = sizes.to(acc.device).to(acc.dtype)
        self.log(name, acc.mean(), prog_bar=prog_bar, sync_dist=True)
        self.log(f"{name}_weighted", (acc * sizes).sum() / sizes.sum(), sync_dist=True)

    def _log_validation_personalised(self) -> None:
        """``val/personal_acc``: the personalised models on the clients' validation splits (their test
        splits when there are none); test time is :meth:`_log_test`."""
        data = self.client_val if self.client_val is not None else self.client_test
        if data is None:
            return
        acc = self.personalised_accuracy(data)
        self._log_mean_accuracy("val/personal_acc", acc, data.sizes, prog_bar=True)

    def _log_test(self) -> torch.Tensor | None:
        """Test metrics of the personalised models (when the clients have test splits) and the training
        accuracies of the evaluated models: ``train/acc`` (global model) and ``train/personal_acc``
        (each client's personalised model on its own training partition, the same personalised models
        as ``test/personal_acc``)."""
        self.log("train/acc", self.global_training_accuracy(), sync_dist=True)
        if self.client_test is None:
            return None
        clients = torch.arange(self.client_test.num_clients, device=self.device)
        params, buffers = self.personalised_models(clients)
        acc = self.accuracy_per_client(params, buffers, self.client_test)
        self._log_mean_accuracy("test/personal_acc", acc, self.client_test.sizes)
        fit = self.accuracy_per_client(params, buffers, self.client_data)
        self._log_mean_accuracy("train/personal_acc", fit, self.client_data.sizes)
        majority = majority_class_accuracy(self.client_data, self.client_test)
        self._log_mean_accuracy("test/personal_majority_acc", majority, self.client_test.sizes)
        return acc

    def on_validation_epoch_start(self) -> None:
        self._start_eval()

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval(batch, self.val_acc, self.val_class_acc, self.val_loss)

    def on_validation_epoch_end(self) -> None:
        self._log_global("val", self.val_acc, self.val_class_acc, self.val_loss)
        self._log_validation_personalised()

    def on_test_epoch_start(self) -> None:
        self._start_eval()

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval(batch, self.test_acc, self.test_class_acc, self.test_loss)

    def on_test_epoch_end(self) -> None:
        self._log_global("test", self.test_acc, self.test_class_acc, self.test_loss)
        acc = self._log_test()
        if acc is not None:  # the per-client table for the loggers (W&B table) and tables/ of the run
            from runner.tracking import log_table

            rows = zip(range(len(acc)), self.client_test.sizes.tolist(), acc.tolist(), strict=True)
            log_table(self, "test/client_accuracy", ["client", "test_samples", "personal_acc"], list(rows))
        if acc is not None and self.trainer.is_global_zero:
            out = Path(self.trainer.default_root_dir) / "client_test_acc.csv"
            out.parent.mkdir(parents=True, exist_ok=True)
            with open(out, "w", newline="") as handle:
                writer = csv.writer(handle)
                writer.writerow(["client", "test_samples", "personal_acc"])
                for k, (n, a) in enumerate(zip(self.client_test.sizes.tolist(), acc.tolist(), strict=True)):
                    writer.writerow([k, n, f"{a:.6f}"])

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["federated"] = {"rounds_done": int(self.global_step)}
