"""A nested training (a teacher, the student-alone reference, the fawning LM, the OVG-HQ expert) that
diverges stops the run with the outer training's one-line error, naming the stage and the key of its
learning rate (runner.nested.nested_trainer attaches runner.callbacks.NonFiniteLossGuard)."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from runner.callbacks import NonFiniteLoss
from runner.nested import nested_trainer
from runner.train import run
from tests.test_experiments_fdr import SMOKE


class _Tiny(L.LightningModule):
    def __init__(self, lr: float):
        super().__init__()
        self.net = torch.nn.Linear(2, 1)
        self.lr = lr

    def training_step(self, batch, batch_idx):
        return self.net(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=self.lr)


def test_a_diverging_nested_training_names_its_stage_and_lr_key():
    loader = DataLoader(TensorDataset(torch.randn(40, 2) * 10), batch_size=4)
    trainer = nested_trainer("tiny teacher", lower_key="method.tiny.lr", max_epochs=3, accelerator="cpu")
    with pytest.raises(NonFiniteLoss) as caught:
        trainer.fit(_Tiny(lr=1.0e12), train_dataloaders=loader)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("tiny teacher: training diverged at global step 1, epoch 0, batch 0:")
    assert message.endswith("lower method.tiny.lr (now 1000000000000.0)")
    # a sane lr trains through the same guard
    trainer = nested_trainer("tiny teacher", lower_key="method.tiny.lr", max_epochs=1, accelerator="cpu")
    trainer.fit(_Tiny(lr=1.0e-3), train_dataloaders=loader)
    assert trainer.global_step == 10


def test_a_teacher_trained_with_an_absurd_lr_stops_the_run(make_cfg):
    key = "method.distill.teacher_training.optimizer.lr"
    cfg = make_cfg("experiment=dual_teacher_hmdb_twin", *SMOKE, f"{key}=1.0e+12")
    cache = Path(cfg.method.distill.teacher_training.cache_dir)
    cached = set(cache.glob("*.pt"))
    with pytest.raises(NonFiniteLoss) as caught:
        run(cfg)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("teacher cnn: training diverged at global step")
    assert f"lower {key} (now 1000000000000.0)" in message
    # nothing was cached for that recipe: a later run does not reuse a diverged teacher
    assert set(cache.glob("*.pt")) == cached
