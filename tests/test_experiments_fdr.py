"""Every experiment runs end to end with exactly ``debug=fdr dataset.synthetic=true`` on CPU — the
command a user types for a smoke test. What makes it quick lives in configs a user has:
``conf/smoke/fdr/<experiment>.yaml`` (tiny twins, small nets; applied by ``debug=fdr``),
``conf/recipe/twin/<experiment>.yaml`` (the twin-sized recipe of a real-data experiment; applied by
``dataset.synthetic=true``) and the debug limits that every nested training (teachers, the
fawning LM) takes from the run (``runner.nested``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.train import run
from tests.conftest import CONF, EXPERIMENTS

SMOKE = ("debug=fdr", "dataset.synthetic=true")


def test_every_experiment_has_a_smoke_preset():
    missing = [e for e in EXPERIMENTS if not (CONF / "smoke" / "fdr" / f"{e}.yaml").is_file()]
    assert not missing, f"conf/smoke/fdr/<experiment>.yaml missing for {missing}"


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_fast_dev_run(make_cfg, experiment):
    cfg = make_cfg(f"experiment={experiment}", *SMOKE)
    run(cfg)
    payload = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert payload["seed"] == cfg.seed
    assert payload["config_hash"]
    assert payload["metrics"], "the run logged no metric"
