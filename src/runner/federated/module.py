"""The LightningModule of federated experiments: one training step = one communication round.

Lightning mapping (documented choice): the training "batch" is the round index; an epoch is
``dataset.rounds_per_epoch`` rounds (:class:`~runner.federated.datamodule.FederatedDataModule`); the
server update is one optimizer step, so ``trainer.global_step`` counts rounds and
``trainer.max_steps`` caps them, while ``trainer.max_epochs × rounds_per_epoch`` sets the total.
Validation (the global model on the global test set: ``val/acc``, ``val/loss``) runs at the end of
every epoch, i.e. every ``rounds_per_epoch`` rounds; per-round training metrics go to the loggers
at every step (``log_every_n_steps``).

Checkpoints hold the round (Lightning's loop state), the global model, the server optimizer
(momentum), the strategy's client state and server buffers (module state dict) and the RNG states
(``RNGStateCallback``). All per-round randomness comes from a generator seeded by (seed, round), so
``resume=auto`` continues exactly as an uninterrupted run.

A non-finite honest update fails the round with the round and client ids (:class:`NonFiniteUpdate`).
"""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from runner.errors import UserError

from .simulator import ClientData, LocalTraining, ParamLayout, resolve_execution
from .strategy import Strategy

log = logging.getLogger("runner.federated")

__all__ = ["FederatedModule", "NonFiniteUpdate"]


class NonFiniteUpdate(RuntimeError):
    """An honest client's update contained NaN or inf."""


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
        self.num_classes = int(num_classes)
        self.execution = execution
        resolve_execution(execution, torch.device("cpu"))  # validate the name early
        self.seed = int(seed)
        self.val_acc = MulticlassAccuracy(num_classes=self.num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes=self.num_classes, average="micro")
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()
        self.client_data: ClientData | None = None
        self.client_sizes: torch.Tensor | None = None
        self._ready = False

    # ---- setup -----------------------------------------------------------------------------------
    def global_flat(self) -> torch.Tensor:
        return self.layout.flatten([p.detach() for p in self.net.parameters()])

    def prepare(self, datamodule) -> None:
        """Take the clients' data from ``datamodule`` and set the strategy up (idempotent).

        Called by Lightning's ``setup``; scripts driving rounds without a Trainer call it directly."""
        if self._ready:
            return
        datamodule.setup("fit")
        self.client_data = datamodule.client_data()
        self.client_sizes = self.client_data.sizes.clone()
        personal = self.layout.mask(self.strategy.personal_parameters)
        self.strategy.setup(self.client_data.num_clients, self.global_flat().cpu(), personal, self.seed)
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

    def on_fit_start(self) -> None:
        self.client_data = self.client_data.to(self.device)
        self.client_sizes = self.client_sizes.to(self.device)

    def local_training(self) -> LocalTraining:
        s = self.strategy
        return LocalTraining(self.net, self.layout, s.local_lr, s.local_steps, s.local_weight_decay)

    # ---- one round -------------------------------------------------------------------------------
    def run_round(self, round_index: int, execution: str | None = None) -> dict[str, torch.Tensor]:
        """Plan, train clients, forge Byzantine messages, aggregate; returns the direction and stats."""
        strategy, data = self.strategy, self.client_data
        execution = resolve_execution(execution or self.execution, self.device)
        plan = strategy.configure_train(round_index, self.global_flat())
        attack = strategy.attack
        trains = ~plan.byzantine | attack.needs_training
        rows = torch.arange(len(plan.clients), device=plan.clients.device)[trains]
        clients = plan.clients[rows]
        idx = data.sample_indices(clients, strategy.local_steps, strategy.batch_size, plan.generator)
        xs, ys = data.x[idx], data.y[idx]
        poisoned = plan.byzantine[rows].view(-1, 1, 1)
        ys = torch.where(poisoned, attack.poison_labels(ys, self.num_classes), ys)
        pseudo, losses = self.local_training().run(execution, plan.start[rows], xs, ys)
        messages = strategy.client_messages(plan, rows, pseudo)
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
        return {"direction": direction, "honest_loss": losses[honest_rows].mean(), "honest": honest}

    def training_step(self, batch, batch_idx: int) -> dict[str, torch.Tensor]:
        round_index = self.global_step
        out = self.run_round(round_index)
        optimizer = self.optimizers()
        optimizer.zero_grad()
        for param, grad in zip(
            self.net.parameters(), self.layout.unflatten(out["direction"]).values(), strict=True
        ):
            param.grad = grad.to(param.dtype).clone()
        optimizer.step()
        loss = out["honest_loss"]
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=1)
        self.log("fl/direction_norm", out["direction"].norm(), on_step=True, on_epoch=False, batch_size=1)
        self.log("fl/round", float(round_index + 1), on_step=True, on_epoch=False, batch_size=1)
        return {"loss": loss.detach(), "loss_terms": {"honest_ce": loss.detach()}}

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.strategy.configure_server_optimizer(self.net.parameters())

    # ---- evaluation ------------------------------------------------------------------------------
    def _eval(self, batch, acc: MulticlassAccuracy, loss_metric: MeanMetric) -> None:
        x, y = batch
        logits = self.net(x)
        loss_metric.update(F.cross_entropy(logits, y), weight=len(y))
        acc.update(logits, y)

    def validation_step(self, batch, batch_idx: int) -> None:
        self._eval(batch, self.val_acc, self.val_loss)

    def on_validation_epoch_end(self) -> None:
        self.log("val/acc", self.val_acc.compute(), prog_bar=True)
        self.log("val/loss", self.val_loss.compute())
        self.val_acc.reset()
        self.val_loss.reset()

    def test_step(self, batch, batch_idx: int) -> None:
        self._eval(batch, self.test_acc, self.test_loss)

    def on_test_epoch_end(self) -> None:
        self.log("test/acc", self.test_acc.compute())
        self.log("test/loss", self.test_loss.compute())
        self.test_acc.reset()
        self.test_loss.reset()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["federated"] = {"rounds_done": int(self.global_step)}
