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


def test_every_numeric_knob_of_every_experiment_has_a_range_and_its_default_passes():
    """Each numeric value of every composed experiment is covered by a range of runner.validation
    (a new config group declares its ranges there), and the shipped defaults satisfy them."""
    from pathlib import Path

    from runner.compose import compose_run_config
    from runner.validation import _is_number, config_leaves, range_rule

    uncovered = []
    for experiment in sorted(p.stem for p in Path("conf/experiment").glob("*.yaml")):
        config = compose_run_config([f"experiment={experiment}"], output_dir="/tmp/x", root_dir="/tmp")
        try:
            validate_config(config)
        except UserError as err:
            uncovered.append(f"{experiment}: its default is rejected: {err}")
            continue
        uncovered += [
            f"{experiment}: {path}={value}"
            for path, value in config_leaves(config)
            if _is_number(value) and range_rule(path) is None
        ]
    assert not uncovered, "declare a range in runner.validation.RANGES for:\n" + "\n".join(uncovered)


def test_choice_lists_are_in_step_with_the_registries():
    from runner.federated.aggregators import AGGREGATORS, PRE_AGGREGATORS
    from runner.federated.attacks import ATTACKS
    from runner.validation import AGGREGATOR_NAMES, ATTACK_NAMES, PRE_AGGREGATOR_NAMES

    assert set(AGGREGATOR_NAMES) == set(AGGREGATORS)
    assert set(PRE_AGGREGATOR_NAMES) == set(PRE_AGGREGATORS)
    assert set(ATTACK_NAMES) == set(ATTACKS)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("fl_strategy.server_lr=-1", "fl_strategy.server_lr=-1: a number > 0"),
        ("fl_strategy.batch_size=0", "fl_strategy.batch_size=0: an integer >= 1"),
        ("fl_strategy.aggregator=medain", "fl_strategy.aggregator='medain': one of mean"),
        ("fl_strategy.byzantine_fraction=0.6", "fl_strategy.byzantine_fraction=0.6: a number in [0, 0.5)"),
        ("dataset.num_clients=0", "dataset.num_clients=0: an integer >= 1"),
        ("dataset.rounds_per_epoch=0", "dataset.rounds_per_epoch=0: an integer >= 1"),
    ],
)
def test_fl_values_are_range_checked_with_the_key_named(make_cfg, override, message):
    with pytest.raises(UserError) as info:
        validate_config(make_cfg("experiment=byrd_nafl_mnist", override))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_range_specs():
    from runner.validation import spec_rule

    assert spec_rule("int >= 1").check(3) and not spec_rule("int >= 1").check(0)
    assert not spec_rule("int >= 1").check(2.0) and not spec_rule("int").check(True)
    assert spec_rule("[0, 1)").check(0.0) and not spec_rule("[0, 1)").check(1.0)
    assert spec_rule("(0, 1]").check(1) and not spec_rule("(0, 1]").check(0)
    assert spec_rule("number > 0").allowed == "a number > 0"
