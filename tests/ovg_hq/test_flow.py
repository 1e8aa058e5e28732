"""The OVG-HQ experiments through the real run flow (``runner.train.run``) with debug=fdr."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from runner.train import run
from tests.conftest import run_cli

CONDITIONS = (
    "text",
    "image_r",
    "image_r+text",
    "image_c+text_c",
    "image_g",
    "image_g+text",
    "segment_g",
    "segment_g+text",
)


def test_trivial_baseline_run_writes_metrics_per_condition(make_cfg):
    cfg = make_cfg(
        "experiment=ovg_hq_qvh_twin", "debug=fdr", "dataset.synthetic=true", "method=ovg_hq_trivial"
    )
    run(cfg)
    payload = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    assert payload["data"]["skipped_feature_files"] == 0
    for condition in CONDITIONS:
        for name in ("oR1@0.5", "omAP", "R1@0.5", "mAP"):
            assert f"test/{condition}/{name}" in payload["metrics"]
    assert payload["objective"]["name"] == "val/text/oR1@0.5"


@pytest.mark.slow
def test_cli_width_mismatch_is_one_line(tmp_path, data_dir):
    """A feature file of the wrong width stops the run with one line naming the file (no traceback)."""
    twin = Path(data_dir) / "synthetic" / "qvhighlights_smoke"
    first = run_cli(["experiment=ovg_hq_qvh_twin", "debug=fdr", "method=ovg_hq_trivial"], tmp_path, data_dir)
    assert first.returncode == 0, first.stderr[-2000:]
    root = tmp_path / "bad"
    import shutil

    shutil.copytree(twin, root)
    victim = sorted((root / "clip_image_g").glob("*.npz"))[0]
    np.savez(victim, features=np.zeros((1, 300), np.float32))
    result = run_cli(
        ["experiment=ovg_hq_qvh", "debug=fdr", "method=ovg_hq_trivial", f"dataset.root={root}"],
        tmp_path,
        data_dir,
    )
    assert result.returncode != 0
    assert victim.name in result.stderr and "Traceback" not in result.stderr
