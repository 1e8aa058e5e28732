"""Lightning strategies and precision on a laptop: DDP on CPU processes, clear errors for GPU-only
requests (tests/test_ddp_sim.py runs trainer=ddp_sim)."""

from __future__ import annotations

import json

import pytest
import torch

from runner.errors import UserError
from runner.parallel import trainer_adjustments
from runner.validation import validate_config
from tests.conftest import TINY_MODEL, TINY_TWIN, run_cli

EXPERIMENT = "experiment=video_supervised_hmdb_twin"
SYNC_WARNING = "sync_dist=True"


def test_fp16_on_cpu_fails_clearly_instead_of_running_bf16(make_cfg):
    cfg = make_cfg(EXPERIMENT, "trainer.precision=16-mixed")
    with pytest.raises(UserError) as info:
        validate_config(cfg)
    message = str(info.value)
    assert "trainer.precision=16-mixed" in message and "bf16-mixed" in message and "\n" not in message


def test_bf16_on_cpu_is_allowed(make_cfg):
    validate_config(make_cfg(EXPERIMENT, "trainer.precision=bf16-mixed"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without a GPU")
def test_ddp_without_gpu_points_to_the_cpu_options(make_cfg):
    with pytest.raises(UserError) as info:
        validate_config(make_cfg(EXPERIMENT, "trainer=ddp"))
    assert "trainer=ddp_sim" in str(info.value) and "trainer.accelerator=cpu" in str(info.value)


def test_ddp_on_cpu_drops_syncbatchnorm_and_uses_two_processes(make_cfg):
    cfg = make_cfg(EXPERIMENT, "trainer=ddp", "trainer.accelerator=cpu")
    validate_config(cfg)
    assert cfg.trainer.sync_batchnorm is True  # the GPU default stays in the config ...
    assert trainer_adjustments(cfg) == {"sync_batchnorm": False, "devices": 2}  # ... and is adapted on CPU
    explicit = make_cfg(EXPERIMENT, "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=3")
    assert trainer_adjustments(explicit) == {"sync_batchnorm": False}


def test_single_device_trainers_are_left_alone(make_cfg):
    assert trainer_adjustments(make_cfg(EXPERIMENT)) == {}


@pytest.mark.slow
def test_ddp_on_cpu_runs_and_syncs_validation_metrics_without_warnings(tmp_path, data_dir):
    result = run_cli(
        [
            "experiment=video_supervised_hmdb",
            "trainer=ddp",
            "trainer.accelerator=cpu",
            "trainer.max_epochs=1",
            "trainer.limit_train_batches=2",
            "trainer.limit_val_batches=1",
            "trainer.limit_test_batches=1",
            *TINY_TWIN,
            *TINY_MODEL,
        ],
        tmp_path,
        data_dir=data_dir,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    assert "MEMBER: 2/2" in output
    assert SYNC_WARNING not in output, [line for line in output.splitlines() if SYNC_WARNING in line]
    (metrics,) = (tmp_path / "logs" / "video_supervised_hmdb" / "runs").glob("*/metrics.json")
    assert {"val/acc", "test/acc"} <= set(json.loads(metrics.read_text())["metrics"])
