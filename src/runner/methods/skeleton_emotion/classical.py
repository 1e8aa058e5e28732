"""The Traditional paradigm and the trivial baseline through the same ``python -m runner`` flow:
a scikit-learn estimator (random forest, SVM, ``DummyClassifier``) fitted on the training split's
affective features and evaluated with the metrics every paradigm uses.

How it fits in Lightning's loop (one epoch, no optimizer): each training step stores the batch's
features and labels; when the epoch's batches are all seen (before validation) the estimator is
fitted on them, once, and training stops (``trainer.should_stop``) whatever ``max_epochs`` says.
Validation and test steps predict with the fitted estimator. ``metrics.json``, the confusion matrix
and the per-class F1 are written exactly as for the neural paradigms.

The estimator is not stored in checkpoints (that would mean pickling it); a run resumed from a
checkpoint, or run with ``train=false``, fits it again on the training split before evaluating —
deterministic for a fixed ``seed`` (``random_state``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from runner.methods.skeleton_emotion.evaluation import EmotionEvaluationModule

log = logging.getLogger(__name__)


class SklearnEmotionClassifier(EmotionEvaluationModule):
    """A scikit-learn classifier on flattened batch inputs (default: the affective features).

    Args:
        estimator: an unfitted scikit-learn classifier (``fit`` / ``predict``).
        num_classes, class_names: from the datamodule.
        inputs: batch keys concatenated (flattened per sample) into the feature vector.
        seed: the estimator's ``random_state`` when it has one (the run's seed).
    """

    def __init__(
        self,
        estimator: Any,
        num_classes: int,
        class_names: Sequence[str] | None = None,
        inputs: Sequence[str] = ("affective",),
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["estimator"])
        if seed is not None and "random_state" in estimator.get_params():
            estimator.set_params(random_state=int(seed))
        self.estimator = estimator
        self.inputs = tuple(inputs)
        self.fitted = False
        self._train_x: list[np.ndarray] = []
        self._train_y: list[np.ndarray] = []
        self._init_evaluation(num_classes, list(class_names) if class_names else None)

    def describe(self) -> str:
        return type(self.estimator).__name__

    def features(self, batch: dict[str, Any]) -> np.ndarray:
        return torch.cat([batch[k].flatten(1).float() for k in self.inputs], dim=1).cpu().numpy()

    # ---- fitting ----
    def configure_optimizers(self) -> None:
        return None  # nothing to optimise by gradient

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        if not self.fitted:
            self._train_x.append(self.features(batch))
            self._train_y.append(batch["label"].cpu().numpy())
        return None

    def fit_estimator(self, x: np.ndarray, y: np.ndarray) -> None:
        """Fit the estimator on ``x [N, F]``, ``y [N]`` and log the training accuracy."""
        self.estimator.fit(x, y)
        self.fitted = True
        train_acc = float((self.estimator.predict(x) == y).mean())
        log.info(
            "%s fitted on %d training samples (training accuracy %.4f)", self.describe(), len(y), train_acc
        )
        if self._trainer is not None:
            self.log("train/acc", train_acc)

    def _ensure_fitted(self) -> None:
        if self.fitted:
            return
        # resumed, train=false, or a debug run whose few batches hold a single class: fit on the whole
        # training split (a classifier needs two classes)
        if not self._train_y or len(np.unique(np.concatenate(self._train_y))) < 2:
            self._train_x, self._train_y = [], []
            for batch in self.trainer.datamodule.train_dataloader():
                self._train_x.append(self.features(batch))
                self._train_y.append(batch["label"].cpu().numpy())
        self.fit_estimator(np.concatenate(self._train_x), np.concatenate(self._train_y))
        self._train_x, self._train_y = [], []

    def on_validation_epoch_start(self) -> None:
        self._ensure_fitted()

    def on_train_epoch_end(self) -> None:
        self._ensure_fitted()
        self.trainer.should_stop = True  # the estimator is fitted: further epochs would change nothing

    def on_test_epoch_start(self) -> None:
        self._ensure_fitted()

    # ---- evaluation ----
    def predict_batch(self, batch: dict[str, Any]) -> tuple[torch.Tensor, None]:
        predicted = self.estimator.predict(self.features(batch))
        return torch.as_tensor(np.asarray(predicted), dtype=torch.long, device=batch["label"].device), None
