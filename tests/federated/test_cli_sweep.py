"""Slow tier: the documented sweep command, as a user runs it (tiny twin)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_cli

TINY = [
    "dataset.twin.train_size=200",
    "dataset.twin.test_size=50",
    "dataset.num_clients=6",
    "dataset.rounds_per_epoch=2",
    "trainer.max_epochs=1",
    "model.channels=[2,4]",
    "model.hidden=8",
]


@pytest.mark.slow
def test_byrd_nafl_sweep_over_seeds_and_aggregators(tmp_path, data_dir):
    result = run_cli(
        ["-m", "experiment=byrd_nafl_mnist", "seed=0,1", "fl_strategy.aggregator=median,krum", *TINY],
        tmp_path,
        data_dir=data_dir,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    found = list((tmp_path / "logs" / "byrd_nafl_mnist").glob("multiruns/*/*/metrics.json"))
    assert len(found) == 4
    assert all("test/acc" in json.loads(p.read_text())["metrics"] for p in found)


@pytest.mark.slow
def test_unknown_aggregator_is_one_line(tmp_path, data_dir):
    result = run_cli(
        ["experiment=byrd_nafl_mnist", "fl_strategy.aggregator=krumm", *TINY], tmp_path, data_dir=data_dir
    )
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert (
        last.startswith("error: invalid value fl_strategy.aggregator='krumm'") and "geometric_median" in last
    )
