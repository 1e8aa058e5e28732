"""The neural paradigms (Feat2Net, FeatFusionNet, End2EndNet): one LightningModule trains any skeleton
network of :mod:`runner.models.skeleton` with cross-entropy.

A network declares the batch keys it reads (``net.inputs``: ``("affective",)`` for the MLP,
``("joints",)`` for the LSTM / ST-GCN / ST-GCN++, ``("joints", "affective")`` for hybrid STEP), so the
paradigm is chosen by the network alone and every paradigm trains on the same batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from torchmetrics import MetricCollection

from runner.methods.skeleton_emotion.evaluation import EmotionEvaluationModule, summary_metrics
from runner.methods.skeleton_emotion.losses import balanced_class_weights, emotion_classification_loss


class NeuralEmotionClassifier(EmotionEvaluationModule):
    """Cross-entropy training of ``net`` on skeleton batches.

    Args:
        net: a skeleton network with an ``inputs`` tuple.
        num_classes, class_names, train_class_counts: from the datamodule.
        optimizer: partial optimizer constructor (``params -> Optimizer``).
        scheduler: optional partial LR scheduler constructor, stepped once per epoch.
        label_smoothing: cross-entropy label smoothing.
        class_weighted: weight the loss by the inverse training-class frequency (a switch; STEP: off).
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., Any] | None = None,
        class_names: Sequence[str] | None = None,
        train_class_counts: Sequence[int] | None = None,
        label_smoothing: float = 0.0,
        class_weighted: bool = False,
    ) -> None:
        super().__init__()
        if not getattr(net, "inputs", None):
            raise TypeError(f"{type(net).__name__} does not declare the batch keys it reads (net.inputs)")
        self.save_hyperparameters(ignore=["net", "optimizer", "scheduler"])
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.label_smoothing = float(label_smoothing)
        weights = (
            balanced_class_weights(train_class_counts) if class_weighted and train_class_counts else None
        )
        self.register_buffer("class_weights", weights, persistent=False)
        self._init_evaluation(num_classes, list(class_names) if class_names else None)
        self.train_metrics: MetricCollection = summary_metrics(self.num_classes).clone(prefix="train/")

    def describe(self) -> str:
        return type(self.net).__name__

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.net(*(batch[key] for key in self.net.inputs))

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return emotion_classification_loss(logits, labels, self.class_weights, self.label_smoothing)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        logits = self(batch)
        loss = self.loss(logits, batch["label"])
        self.train_metrics.update(logits.detach().argmax(1), batch["label"])
        self.log("train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=logits.shape[0])
        return {"loss": loss, "loss_terms": {"ce": loss.detach()}}

    def on_train_epoch_end(self) -> None:
        self.log_dict(self.train_metrics.compute())
        self.train_metrics.reset()

    def predict_batch(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self(batch)
        return logits.argmax(1), self.loss(logits, batch["label"])

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer_factory(params=self.parameters())
        if self.scheduler_factory is None:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}
