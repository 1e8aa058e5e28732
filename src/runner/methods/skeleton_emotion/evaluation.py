"""What every paradigm of the benchmark reports (card "What the twin must show", issue item 5):
accuracy and macro-F1 (torchmetrics) on val and test, per-class F1 on test, and a confusion matrix of
the test split saved as ``confusion_test.png`` (+ ``confusion_test.json`` with the counts) in the run
folder.

:class:`EmotionEvaluationModule` holds the metrics and the val / test steps; a paradigm provides
:meth:`~EmotionEvaluationModule.predict_batch` (class indices of a batch, plus its loss where there is
one). The neural paradigms and the scikit-learn ones thus share one evaluation code path.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score

log = logging.getLogger(__name__)


def summary_metrics(num_classes: int) -> MetricCollection:
    """Accuracy (micro, over samples) and macro-F1 (mean of the per-class F1)."""
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes=num_classes, average="micro"),
            "macro_f1": MulticlassF1Score(num_classes=num_classes, average="macro"),
        }
    )


def save_confusion_matrix(matrix: torch.Tensor, class_names: list[str], path: Path, title: str) -> None:
    """A PNG of ``matrix`` (rows: true class, columns: predicted) with counts and row-normalised shading,
    and a JSON file with the counts next to it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = matrix.detach().cpu().long()
    rows = counts.sum(1, keepdim=True).clamp_min(1)
    share = (counts.float() / rows).numpy()
    size = max(3.5, 0.9 * len(class_names) + 1.5)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    for i in range(counts.shape[0]):
        for j in range(counts.shape[1]):
            ax.text(
                j,
                i,
                str(int(counts[i, j])),
                ha="center",
                va="center",
                color="white" if share[i, j] > 0.5 else "black",
                fontsize=8,
            )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    path.with_suffix(".json").write_text(
        json.dumps({"class_names": list(class_names), "rows_true_cols_predicted": counts.tolist()}, indent=1)
    )


class EmotionEvaluationModule(L.LightningModule):
    """Validation / test steps and metrics shared by every paradigm (module docstring).

    Subclasses call :meth:`_init_evaluation` and implement :meth:`predict_batch`.
    """

    def _init_evaluation(self, num_classes: int, class_names: list[str] | None) -> None:
        self.num_classes = int(num_classes)
        self.class_names = list(class_names) if class_names else [str(i) for i in range(self.num_classes)]
        self.val_metrics = summary_metrics(self.num_classes).clone(prefix="val/")
        self.test_metrics = summary_metrics(self.num_classes).clone(prefix="test/")
        self.test_per_class_f1 = MulticlassF1Score(num_classes=self.num_classes, average=None)
        self.test_confusion = MulticlassConfusionMatrix(num_classes=self.num_classes)
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()

    def describe(self) -> str:
        """The model's name in figure titles."""
        return type(self).__name__

    def predict_batch(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """``(predicted class [B], loss or None)`` of an evaluation batch."""
        raise NotImplementedError

    # ---- validation ----
    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        preds, loss = self.predict_batch(batch)
        self.val_metrics.update(preds, batch["label"])
        if loss is not None:
            self.val_loss.update(loss, weight=preds.shape[0])

    def on_validation_epoch_end(self) -> None:
        self.log_dict(self.val_metrics.compute(), prog_bar=True)
        self.val_metrics.reset()
        if self.val_loss.update_called:
            self.log("val/loss", self.val_loss.compute())
        self.val_loss.reset()

    # ---- test ----
    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        preds, loss = self.predict_batch(batch)
        self.test_metrics.update(preds, batch["label"])
        self.test_per_class_f1.update(preds, batch["label"])
        self.test_confusion.update(preds, batch["label"])
        if loss is not None:
            self.test_loss.update(loss, weight=preds.shape[0])

    def on_test_epoch_end(self) -> None:
        self.log_dict(self.test_metrics.compute())
        per_class = self.test_per_class_f1.compute()
        for name, value in zip(self.class_names, per_class, strict=True):
            self.log(f"test/f1_{name}", value)
        if self.test_loss.update_called:
            self.log("test/loss", self.test_loss.compute())
        matrix = self.test_confusion.compute()
        if self.trainer is not None and self.trainer.is_global_zero:
            path = Path(self.trainer.default_root_dir) / "confusion_test.png"
            save_confusion_matrix(matrix, self.class_names, path, f"{self.describe()}: test split")
            log.info("confusion matrix of the test split: %s", path)
        for metric in (self.test_metrics, self.test_per_class_f1, self.test_confusion, self.test_loss):
            metric.reset()
