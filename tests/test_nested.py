"""Nested trainings take the outer run's debug limits (runner.nested), and dataset.synthetic=<bool>
on the command line is the data=twin|real choice (runner.overrides)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from runner.nested import apply_limits, debug_limits, limits_of, nested_trainer, outer_run
from runner.overrides import with_data_choice


def test_limits_of_debug_modes():
    assert limits_of({"fast_dev_run": True, "max_epochs": 1}) == {"fast_dev_run": True}
    limit = {"max_epochs": 3, "limit_train_batches": 3, "limit_val_batches": 2, "limit_test_batches": 2}
    assert limits_of(limit) == limit
    # a normal run imposes nothing: null limits, all batches (float 1.0), no overfitting
    normal = {"max_epochs": 30, "limit_train_batches": None, "limit_val_batches": 1.0, "overfit_batches": 0.0}
    assert limits_of(normal) == {}
    assert limits_of({"limit_train_batches": 1, "max_epochs": 5}) == {
        "limit_train_batches": 1,
        "max_epochs": 5,
    }


def test_apply_limits_caps_and_keeps_switched_off_loops():
    recipe = {"max_epochs": 30, "limit_val_batches": 0, "max_steps": -1}
    limited = apply_limits(recipe, {"max_epochs": 3, "limit_train_batches": 3, "limit_val_batches": 2})
    assert limited["max_epochs"] == 3 and limited["limit_train_batches"] == 3
    assert limited["limit_val_batches"] == 0  # the nested recipe's validation stays off
    assert apply_limits({"max_epochs": 2}, {"max_epochs": 3})["max_epochs"] == 2  # capped, never raised
    # a step-based recipe (the fawning LM) is capped by epochs x batches too
    steps = apply_limits({"max_steps": 2500, "max_epochs": -1}, {"max_epochs": 3, "limit_train_batches": 3})
    assert steps["max_steps"] == 9 and steps["max_epochs"] == 3
    assert apply_limits({"max_steps": 2500}, {"fast_dev_run": True})["fast_dev_run"] is True


def test_limits_hold_only_inside_the_run():
    assert debug_limits() == {}
    with outer_run({"fast_dev_run": True}):
        assert debug_limits() == {"fast_dev_run": True}
    assert debug_limits() == {}


class _Tiny(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        return self.net(batch[0]).pow(2).mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


@pytest.mark.parametrize(("outer", "steps"), [({}, 40), ({"fast_dev_run": True}, 1)])
def test_nested_trainer_runs_within_the_outer_limits(outer, steps):
    loader = DataLoader(TensorDataset(torch.randn(40, 2)), batch_size=4)
    with outer_run(outer):
        trainer = nested_trainer("tiny", max_epochs=4, accelerator="cpu")
        trainer.fit(_Tiny(), train_dataloaders=loader)
    assert trainer.global_step == steps


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (["experiment=x", "dataset.synthetic=true"], ["experiment=x", "data=twin"]),
        (["dataset.synthetic=False"], ["data=real"]),
        (["dataset.synthetic=true,false", "seed=1"], ["data=twin,real", "seed=1"]),
        (["+dataset.synthetic=true", "data=twin"], ["data=twin"]),
        (["dataset.synthetic=maybe"], ["dataset.synthetic=maybe"]),  # left for validation to report
        (["dataset.synthetic_root=/x"], ["dataset.synthetic_root=/x"]),
    ],
)
def test_synthetic_override_is_the_data_choice(given, expected):
    assert with_data_choice(given) == expected


def test_nested_trainings_write_under_the_run_folder_never_the_current_one(tmp_path):
    """A nested Trainer's default_root_dir is <run>/nested/<stage> inside a run (a teacher's test
    confusion matrix went to ./figures of the folder the command was started in)."""
    from omegaconf import OmegaConf

    from runner.nested import nested_root_dir, nested_trainer, with_nested_debug_limits

    cfg = OmegaConf.create({"paths": {"output_dir": str(tmp_path / "run")}, "trainer": {}})
    seen = with_nested_debug_limits(lambda c: nested_trainer("teacher cnn", max_epochs=1).default_root_dir)(
        cfg
    )
    assert seen == str(tmp_path / "run" / "nested" / "teacher_cnn")
    outside = nested_root_dir("teacher cnn")
    assert not outside.startswith(str(tmp_path)) and "runner-nested-" in outside
