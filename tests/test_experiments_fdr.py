"""Every experiment runs end to end with debug=fdr on CPU, on a tiny synthetic twin."""

from __future__ import annotations

import json

import pytest

from runner.train import run
from tests.conftest import EXPERIMENTS, TINY_MODEL, TINY_TWIN


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_fast_dev_run(make_cfg, experiment):
    cfg = make_cfg(f"experiment={experiment}", "debug=fdr", *TINY_TWIN, *TINY_MODEL)
    run(cfg)
    payload = json.loads(open(f"{cfg.paths.output_dir}/metrics.json").read())
    assert payload["seed"] == cfg.seed
    assert payload["config_hash"]
    assert "test/acc" in payload["metrics"]
    assert payload["corrupt_samples"]["count"] == 0
