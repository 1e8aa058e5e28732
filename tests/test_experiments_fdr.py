"""Every experiment runs end to end with debug=fdr on CPU, on a tiny synthetic twin.

Per-experiment speed-ups (a smaller twin, a smaller net) come from ``tests/fdr_overrides/*.yaml``
(experiment-name pattern -> overrides); every experiment also gets ``dataset.synthetic=true``.
"""

from __future__ import annotations

import json
from fnmatch import fnmatch
from pathlib import Path

import pytest
import yaml

from runner.train import run
from tests.conftest import EXPERIMENTS

OVERRIDE_FILES = sorted((Path(__file__).parent / "fdr_overrides").glob("*.yaml"))


def fast_overrides(experiment: str) -> list[str]:
    overrides = ["dataset.synthetic=true"]
    for path in OVERRIDE_FILES:
        for pattern, extra in (yaml.safe_load(path.read_text()) or {}).items():
            if fnmatch(experiment, pattern):
                overrides += [o for o in extra if o not in overrides]
    return overrides


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_fast_dev_run(make_cfg, experiment):
    cfg = make_cfg(f"experiment={experiment}", "debug=fdr", *fast_overrides(experiment))
    run(cfg)
    payload = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert payload["seed"] == cfg.seed
    assert payload["config_hash"]
    assert payload["metrics"], "the run logged no metric"
