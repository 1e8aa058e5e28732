"""The value checks behind one-line user errors."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from runner.errors import UserError
from runner.validation import validate_config


def cfg(**sections):
    base = {
        "seed": 0,
        "resume": None,
        "trainer": {"max_epochs": 2, "accelerator": "cpu", "precision": "32-true"},
    }
    base.update(sections)
    return OmegaConf.create(base)


def test_valid_config_passes():
    validate_config(cfg(method={"optimizer": {"lr": 0.1, "weight_decay": 0.0, "momentum": 0.9}}))


@pytest.mark.parametrize(
    ("sections", "key", "value"),
    [
        ({"method": {"optimizer": {"lr": -1.0}}}, "method.optimizer.lr", "-1.0"),
        ({"method": {"optimizer": {"lr": 0}}}, "method.optimizer.lr", "0"),
        ({"method": {"optimizer": {"weight_decay": -0.1}}}, "method.optimizer.weight_decay", "-0.1"),
        ({"dataset": {"sampling": "random"}}, "dataset.sampling", "'random'"),
        ({"dataset": {"batch_size": 0}}, "dataset.batch_size", "0"),
        ({"dataset": {"reader": {"split": 4}}}, "dataset.reader.split", "4"),
        ({"model": {"temporal": "lstm"}}, "model.temporal", "'lstm'"),
        ({"resume": "yes"}, "resume", "'yes'"),
    ],
)
def test_invalid_value_names_key_value_and_allowed(sections, key, value):
    with pytest.raises(UserError) as info:
        validate_config(cfg(**sections))
    message = str(info.value)
    assert f"{key}={value}" in message
    assert ("one of" in message) or (">" in message) or ("[0, 1)" in message)
    assert "\n" not in message


def test_bad_precision_lists_the_options():
    config = cfg()
    config.trainer.precision = "fp8"
    with pytest.raises(UserError, match="trainer.precision='fp8'.*bf16-mixed"):
        validate_config(config)


def test_gpu_without_cuda_is_a_user_error(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    config = cfg()
    config.trainer.accelerator = "gpu"
    with pytest.raises(UserError, match="trainer=cpu"):
        validate_config(config)
