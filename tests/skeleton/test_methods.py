"""The paradigms' LightningModules through a real Trainer on a tiny skeleton datamodule."""

from __future__ import annotations

import json
from functools import partial

import lightning as L
import numpy as np
import pytest
import torch
from sklearn.dummy import DummyClassifier
from sklearn.ensemble import RandomForestClassifier

from runner.data.skeleton import SkeletonDataModule
from runner.methods.skeleton_emotion import NeuralEmotionClassifier, SklearnEmotionClassifier
from runner.methods.skeleton_emotion.losses import balanced_class_weights, emotion_classification_loss
from runner.methods.skeleton_emotion.schedules import cosine_over_epochs, multistep_at_fractions
from runner.models.skeleton import AffectiveMLP
from tests.skeleton.test_datamodule import FakeReader, collection


def datamodule(tmp_path):
    return SkeletonDataModule(
        reader=FakeReader(collection(num=48)),
        root=str(tmp_path),
        layout="egait16",
        class_names=["angry", "neutral", "happy", "sad"],
        split={"val_fraction": 0.25, "test_fraction": 0.25},
        batch_size=8,
    )


def trainer(tmp_path, epochs=2):
    return L.Trainer(
        default_root_dir=str(tmp_path),
        max_epochs=epochs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )


def test_sklearn_paradigm_fits_once_and_reports_every_metric(tmp_path):
    dm = datamodule(tmp_path)
    props = dm.network_kwargs()
    module = SklearnEmotionClassifier(
        RandomForestClassifier(n_estimators=10), props["num_classes"], props["class_names"], seed=3
    )
    assert module.estimator.random_state == 3
    fits = []
    original = module.fit_estimator
    module.fit_estimator = lambda x, y: (fits.append(len(y)), original(x, y))
    run = trainer(tmp_path, epochs=5)
    run.fit(module, datamodule=dm)
    assert fits == [24], "fitted once, on the whole training split"
    assert run.current_epoch == 1, "training stops after the fit"
    assert "val/acc" in run.callback_metrics and "val/macro_f1" in run.callback_metrics
    run.test(module, datamodule=dm)
    metrics = run.callback_metrics
    for key in ("test/acc", "test/macro_f1", "test/f1_angry", "test/f1_sad"):
        assert key in metrics
    assert (tmp_path / "confusion_test.png").is_file()
    counts = json.loads((tmp_path / "confusion_test.json").read_text())["rows_true_cols_predicted"]
    assert np.asarray(counts).sum() == 12


def test_majority_baseline_predicts_the_most_frequent_training_class(tmp_path):
    dm = datamodule(tmp_path)
    props = dm.network_kwargs()
    module = SklearnEmotionClassifier(DummyClassifier(strategy="most_frequent"), 4, props["class_names"])
    run = trainer(tmp_path, epochs=1)
    run.fit(module, datamodule=dm)
    batch = next(iter(dm.test_dataloader()))
    preds, loss = module.predict_batch(batch)
    assert loss is None and len(set(preds.tolist())) == 1


def test_sklearn_paradigm_refits_when_testing_without_training(tmp_path):
    dm = datamodule(tmp_path)
    module = SklearnEmotionClassifier(RandomForestClassifier(n_estimators=5, random_state=0), 4)
    trainer(tmp_path).test(module, datamodule=dm)
    assert module.fitted


def test_neural_paradigm_trains_and_evaluates(tmp_path):
    dm = datamodule(tmp_path)
    props = dm.network_kwargs()
    net = AffectiveMLP(4, props["num_affective"], hidden=[16])
    module = NeuralEmotionClassifier(
        net,
        4,
        optimizer=partial(torch.optim.Adam, lr=1e-2),
        scheduler=partial(multistep_at_fractions, total_epochs=2),
        class_names=props["class_names"],
        train_class_counts=props["train_class_counts"],
        class_weighted=True,
    )
    before = [p.detach().clone() for p in net.parameters()]
    run = trainer(tmp_path)
    run.fit(module, datamodule=dm)
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters(), strict=True))
    assert {"val/acc", "val/macro_f1", "val/loss", "train/acc", "train/loss"} <= set(run.callback_metrics)
    run.test(module, datamodule=dm)
    assert {"test/acc", "test/macro_f1", "test/loss", "test/f1_happy"} <= set(run.callback_metrics)


def test_a_net_must_declare_its_inputs():
    with pytest.raises(TypeError, match="net.inputs"):
        NeuralEmotionClassifier(torch.nn.Linear(3, 4), 4, optimizer=partial(torch.optim.SGD, lr=0.1))


def test_schedules_follow_the_run_length():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    assert sorted(multistep_at_fractions(opt, 1000).milestones) == [500, 750, 875]
    assert sorted(multistep_at_fractions(opt, 8).milestones) == [4, 6, 7]
    cosine = cosine_over_epochs(opt, 10)
    assert cosine.T_max == 10 and cosine.eta_min == 0.0


def test_balanced_weights_and_loss():
    weights = balanced_class_weights([10, 30, 0, 20])
    torch.testing.assert_close(weights, torch.tensor([1.5, 0.5, 0.0, 0.75]))
    logits = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    labels = torch.tensor([0, 0])
    plain = emotion_classification_loss(logits, labels)
    expected = torch.nn.functional.cross_entropy(logits, labels)
    torch.testing.assert_close(plain, expected)


def test_a_single_class_batch_falls_back_to_the_whole_training_split(tmp_path, monkeypatch):
    """A debug run's single batch may hold one class, which no classifier can be fitted on."""
    from types import SimpleNamespace

    from sklearn.svm import SVC

    dm = datamodule(tmp_path)
    dm.network_kwargs()
    module = SklearnEmotionClassifier(SVC(), 4)
    module._train_x = [np.zeros((3, 27), np.float32)]
    module._train_y = [np.array([2, 2, 2])]
    monkeypatch.setattr(
        SklearnEmotionClassifier, "trainer", property(lambda self: SimpleNamespace(datamodule=dm))
    )
    module._ensure_fitted()
    assert module.fitted and len(module.estimator.classes_) == 4
