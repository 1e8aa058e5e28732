"""Supervised video classification: any backbone, cross-entropy, top-1 / top-5 accuracy.

Teacher and student networks of the dual-teacher experiments are trained with this module;
:class:`VideoClassificationModule` is the evaluation / optimiser code it shares with the
distillation module (:class:`runner.methods.dual_teacher.DualTeacherDistillation`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from runner.tracking import log_confusion_matrix


def accuracy_metrics(num_classes: int) -> MetricCollection:
    """Top-1 and (when there are more than 5 classes) top-5 accuracy, micro-averaged over clips."""
    metrics = {"acc": MulticlassAccuracy(num_classes=num_classes, top_k=1, average="micro")}
    if num_classes > 5:
        metrics["acc_top5"] = MulticlassAccuracy(num_classes=num_classes, top_k=5, average="micro")
    return MetricCollection(metrics)


class VideoClassificationModule(L.LightningModule):
    """What every video classifier here shares: train/val/test accuracy and loss metrics, the
    evaluation steps and epoch ends, and an optimiser (+ per-epoch LR scheduler) from partial
    constructors.

    Subclasses call :meth:`_init_classification` in ``__init__`` and provide ``training_step``,
    :meth:`eval_logits` (the logits of a batch at evaluation) and, when not every parameter is
    optimised, :meth:`optimized_parameters`; :meth:`eval_loss` is plain cross-entropy unless
    overridden.
    """

    optimizer_factory: Callable[..., torch.optim.Optimizer]
    scheduler_factory: Callable[..., Any] | None

    def _init_classification(
        self,
        num_classes: int,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None,
    ) -> None:
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.train_metrics = accuracy_metrics(num_classes).clone(prefix="train/")
        self.val_metrics = accuracy_metrics(num_classes).clone(prefix="val/")
        self.test_metrics = accuracy_metrics(num_classes).clone(prefix="test/")
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()
        # logged at the end of test as a table and an image (runner.tracking.log_confusion_matrix)
        self.test_confusion = MulticlassConfusionMatrix(num_classes=num_classes)

    # ---- hooks for subclasses ----
    def eval_logits(self, batch: dict[str, Any]) -> torch.Tensor:
        raise NotImplementedError

    def eval_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(logits, labels)

    def optimized_parameters(self) -> Iterable[nn.Parameter]:
        return self.parameters()

    # ---- shared steps ----
    @staticmethod
    def _is_empty(batch: dict[str, Any]) -> bool:
        # every clip of the batch was corrupt (the loader dropped them and named them in batch["corrupt"])
        return batch["video"].shape[0] == 0

    def on_train_epoch_end(self) -> None:
        self.log_dict(self.train_metrics.compute(), sync_dist=True)
        self.train_metrics.reset()

    def _eval_step(
        self, batch: dict[str, Any], metrics: MetricCollection, loss_metric: MeanMetric
    ) -> torch.Tensor | None:
        if self._is_empty(batch):
            return None
        logits = self.eval_logits(batch)
        loss_metric.update(self.eval_loss(logits, batch["label"]), weight=logits.shape[0])
        metrics.update(logits, batch["label"])
        if metrics is self.test_metrics:
            self.test_confusion.update(logits, batch["label"])
        return logits

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, self.val_metrics, self.val_loss)

    def on_validation_epoch_end(self) -> None:
        # torchmetrics states are already reduced over ranks by compute(); sync_dist=True only tells
        # Lightning so (no DDP warning; averaging equal values changes nothing)
        self.log_dict(self.val_metrics.compute(), prog_bar=True, sync_dist=True)
        self.log("val/loss", self.val_loss.compute(), sync_dist=True)
        self.val_metrics.reset()
        self.val_loss.reset()

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, self.test_metrics, self.test_loss)

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.test_metrics.compute(), sync_dist=True)
        self.log("test/loss", self.test_loss.compute(), sync_dist=True)
        self.test_metrics.reset()
        self.test_loss.reset()
        names = getattr(getattr(self.trainer, "datamodule", None), "class_names", None)
        log_confusion_matrix(self, "test/confusion_matrix", self.test_confusion.compute(), names)
        self.test_confusion.reset()

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.optimized_parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


class VideoClassifier(VideoClassificationModule):
    """Cross-entropy training of ``net`` on batches ``{"video": [B,C,T,H,W], "label": [B]}``.

    Args:
        net: a built video backbone (``forward(x) -> logits``).
        num_classes: number of classes of the data (for the metrics).
        optimizer: a partial optimizer constructor (``params -> Optimizer``).
        scheduler: an optional partial LR scheduler constructor (``optimizer -> LRScheduler``),
            stepped once per epoch.
        label_smoothing: cross-entropy label smoothing.
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        self.net = net
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        self._init_classification(num_classes, optimizer, scheduler)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.net(video)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor] | None:
        if self._is_empty(batch):
            return None
        logits = self.net(batch["video"])
        loss = self.criterion(logits, batch["label"])
        self.train_metrics.update(logits.detach(), batch["label"])
        self.log(
            "train/loss",
            loss,
            on_step=True,
            on_epoch=True,
            prog_bar=True,
            batch_size=logits.shape[0],
            sync_dist=True,
        )
        return {"loss": loss, "loss_terms": {"ce": loss.detach()}}

    def eval_logits(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.net(batch["video"])

    def eval_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.criterion(logits, labels)
