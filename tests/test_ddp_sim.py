"""Slow tier: trainer=ddp_sim (2 CPU processes) on video_supervised_hmdb with the twin."""

from __future__ import annotations

import json

import pytest

from tests.conftest import TINY_MODEL, TINY_TWIN, run_cli


@pytest.mark.slow
def test_ddp_sim_two_cpu_processes(tmp_path, data_dir):
    result = run_cli(
        [
            "experiment=video_supervised_hmdb",
            "trainer=ddp_sim",
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
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # validation / test metrics are reduced across the two ranks without Lightning's sync_dist warning
    assert "sync_dist=True" not in result.stdout + result.stderr
    metrics = list((tmp_path / "logs" / "video_supervised_hmdb" / "runs").glob("*/metrics.json"))
    assert len(metrics) == 1
    assert "test/acc" in json.loads(metrics[0].read_text())["metrics"]
