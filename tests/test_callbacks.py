"""Shared callbacks: RNG state round trip, NaN stop message, corrupt-sample counting, atomic writes."""

from __future__ import annotations

import os
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from runner.callbacks import CorruptSampleCounter, NonFiniteLoss, NonFiniteLossGuard, RNGStateCallback
from runner.checkpointing import RESUME_KEYS, AtomicCheckpointIO, find_resume_checkpoint


def training_checkpoint() -> dict:
    """The smallest dict with the keys of a Lightning training checkpoint."""
    return {key: {} for key in RESUME_KEYS}


def test_rng_state_round_trip(tmp_path):
    callback = RNGStateCallback()
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    state = callback.state_dict()
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    # survive a weights_only save/load, as in a checkpoint
    path = tmp_path / "rng.pt"
    torch.save(state, path)
    callback.load_state_dict(torch.load(path, weights_only=True))
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected


def test_nonfinite_loss_names_step_batch_and_terms():
    guard = NonFiniteLossGuard()
    trainer = SimpleNamespace(global_step=7, current_epoch=1)
    outputs = {
        "loss": torch.tensor(float("nan")),
        "loss_terms": {"ce": torch.tensor(float("nan")), "kd": torch.tensor(0.5)},
    }
    with pytest.raises(NonFiniteLoss, match=r"global step 7.*batch 3.*'ce': nan.*'kd': 0.5"):
        guard.on_train_batch_end(trainer, None, outputs, None, 3)
    guard.on_train_batch_end(trainer, None, {"loss": torch.tensor(1.0)}, None, 3)  # finite: no error


def test_divergence_names_the_first_bad_step_and_the_key_to_lower():
    """Checked every 4 steps on the device: the report still names the first bad step; an exploding
    (finite) loss counts, and a blown-up parameter after a finite loss names the update's key."""
    net = torch.nn.Linear(2, 1)
    guard = NonFiniteLossGuard(check_every_n_steps=4, max_loss=1e6, max_abs=1e3)
    guard.lower_keys = {"loss": "fl_strategy.local_lr", "update": "fl_strategy.server_lr"}
    guard.lower_values = {"fl_strategy.server_lr": 0.05}
    module = SimpleNamespace(parameters=net.parameters)
    step = SimpleNamespace(global_step=0, current_epoch=0)
    guard.on_train_batch_end(step, module, {"loss": torch.tensor(0.5)}, None, 0)
    with torch.no_grad():
        net.weight.fill_(5e3)  # the server step blew the weights up
    guard.on_train_batch_end(
        SimpleNamespace(global_step=1, current_epoch=0), module, {"loss": torch.tensor(0.4)}, None, 1
    )
    guard.on_train_batch_end(
        SimpleNamespace(global_step=2, current_epoch=0), module, {"loss": torch.tensor(7.9e19)}, None, 2
    )
    with pytest.raises(NonFiniteLoss) as info:
        guard.on_train_batch_end(
            SimpleNamespace(global_step=3, current_epoch=0), module, {"loss": torch.tensor(1.0)}, None, 3
        )
    message = str(info.value)
    assert "global step 1" in message and "batch 1" in message
    assert "lower fl_strategy.server_lr (now 0.05)" in message and "\n" not in message
    with torch.no_grad():
        net.weight.fill_(0.1)
    guard.on_train_batch_end(
        SimpleNamespace(global_step=4, current_epoch=0), module, {"loss": torch.tensor(7.9e19)}, None, 0
    )
    with pytest.raises(NonFiniteLoss, match=r"global step 4.*loss 7.9e\+19.*lower fl_strategy.local_lr"):
        guard.on_train_epoch_end(None, module)  # the end of an epoch checks what is pending


def test_nonfinite_loss_is_a_user_error():
    from runner.errors import UserError

    assert issubclass(NonFiniteLoss, UserError)


def test_corrupt_counter_counts_unique_paths():
    counter = CorruptSampleCounter()
    counter.on_train_batch_start(None, None, {"corrupt": ["a.avi"]}, 0)
    counter.on_validation_batch_start(None, None, {"corrupt": ["a.avi", "b.avi"]}, 0)
    counter.on_test_batch_start(None, None, {"corrupt": []}, 0)
    assert counter.summary() == {"count": 2, "occurrences": 3, "paths": ["a.avi", "b.avi"]}


def test_atomic_checkpoint_keeps_old_file_on_failure(tmp_path):
    io = AtomicCheckpointIO()
    target = tmp_path / "ckpt" / "last.ckpt"
    io.save_checkpoint({"w": torch.ones(2)}, target)

    class Boom:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        io.save_checkpoint({"w": Boom()}, target)
    assert torch.equal(torch.load(target, weights_only=True)["w"], torch.ones(2))
    assert [p.name for p in target.parent.iterdir()] == ["last.ckpt"]  # no temp file left behind


def test_find_resume_checkpoint_prefers_own_then_newest(tmp_path):
    logs = tmp_path / "logs"
    old = logs / "task" / "runs" / "a" / "checkpoints" / "last.ckpt"
    new = logs / "task" / "runs" / "b" / "checkpoints" / "last.ckpt"
    for i, path in enumerate((old, new)):
        path.parent.mkdir(parents=True)
        torch.save(training_checkpoint(), path)
        os.utime(path, (1000 + i, 1000 + i))
    assert find_resume_checkpoint(str(tmp_path / "fresh"), str(logs), "task") == str(new)
    own = tmp_path / "fresh" / "checkpoints" / "last.ckpt"
    own.parent.mkdir(parents=True)
    torch.save(training_checkpoint(), own)
    assert find_resume_checkpoint(str(tmp_path / "fresh"), str(logs), "task") == str(own)
    assert find_resume_checkpoint(str(tmp_path / "x"), str(logs), "other") is None


def test_isolated_rng_restores_every_global_stream(monkeypatch):
    from runner.utils import isolated_rng

    monkeypatch.setenv("PL_GLOBAL_SEED", "7")
    random.seed(3), np.random.seed(3), torch.manual_seed(3)
    expected = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(3), np.random.seed(3), torch.manual_seed(3)
    with isolated_rng(99):
        assert os.environ["PL_GLOBAL_SEED"] == "99"
        random.random(), np.random.rand(), torch.rand(5)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expected
    assert os.environ["PL_GLOBAL_SEED"] == "7"
