"""A few damaged inputs end to end through ``python -m runner`` (the rest of the fuzz suite calls the
readers in-process): each exits non-zero with one ``error:`` line naming the culprit, no traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import run_cli


def assert_one_line_error(result: subprocess.CompletedProcess, *named: str) -> str:
    assert result.returncode not in (0, None), result.stdout[-2000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: "), result.stderr[-2000:]
    for name in named:
        assert name in last, last
    return last


def test_an_empty_interaction_file_fails_in_one_line(tmp_path):
    root = tmp_path / "yelp"
    root.mkdir()
    (root / "yelp.inter").write_text("")
    result = run_cli(
        ["experiment=lightgcn_yelp", f"dataset.root={root}"], cwd=tmp_path, data_dir=tmp_path / "data"
    )
    assert_one_line_error(result, "yelp.inter")


def test_a_typo_in_the_aggregator_fails_before_any_twin_is_generated(tmp_path):
    data = tmp_path / "data"
    started = time.perf_counter()
    result = run_cli(
        ["experiment=byrd_nafl_mnist", "fl_strategy.aggregator=medain"], cwd=tmp_path, data_dir=data
    )
    elapsed = time.perf_counter() - started
    assert_one_line_error(result, "fl_strategy.aggregator='medain'", "geometric_median")
    assert not (data / "synthetic").exists(), "validation runs before any twin is generated"
    print(f"typo reported after {elapsed:.1f} s")  # informational, not asserted (machine load varies)


def test_a_truncated_checkpoint_fails_in_one_line_naming_it(tmp_path):
    ckpt = tmp_path / "last.ckpt"
    torch.save({"state_dict": {"w": torch.ones(10_000)}, "loops": {}}, ckpt)
    ckpt.write_bytes(ckpt.read_bytes()[:5000])
    result = run_cli(
        ["experiment=fedavg_mnist", f"ckpt_path={ckpt}"], cwd=tmp_path, data_dir=tmp_path / "data"
    )
    assert_one_line_error(result, str(ckpt))


@pytest.mark.slow
def test_sigterm_exits_non_zero_and_says_how_to_resume(tmp_path):
    env = dict(os.environ, RUNNER_ROOT=str(tmp_path), WANDB_MODE="offline")
    env.pop("HYDRA_FULL_ERROR", None)
    args = [
        "experiment=video_supervised_hmdb_twin",
        "dataset.twin.num_classes=3",
        "dataset.twin.clips_per_class=3",
        "dataset.twin.num_frames=8",
        "dataset.twin.size=32",
        "model.width_factor=0.25",
        "model.depth_factor=0.2",
        "trainer.max_epochs=500",
        f"paths.data_dir={tmp_path / 'data'}",
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "runner", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 600
    while not list(tmp_path.glob("logs/*/runs/*/checkpoints/last.ckpt")) and time.time() < deadline:
        time.sleep(1)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 128 + signal.SIGTERM
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("interrupted by SIGTERM; resume with: python -m runner ")
    assert "ckpt_path=" in last and Path(last.split("ckpt_path=")[-1]).is_file()
