"""The benchmark through ``python -m runner``'s flow: every paradigm with ``debug=fdr`` on the twin,
a malformed gait counted in ``metrics.json``, the layout check as one line, PYSKL's own splits."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from runner.data.skeleton.twin import generate_gaits
from runner.train import run
from tests.conftest import run_cli

SMOKE = ("debug=fdr", "dataset.synthetic=true")
FAST = ["skeleton_majority", "skeleton_rf", "skeleton_step"]
SLOW = ["skeleton_svm", "skeleton_mlp", "skeleton_lstm", "skeleton_stgcn", "skeleton_stgcnpp"]


def metrics_of(cfg) -> dict:
    return json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())


def check_paradigm_run(make_cfg, method):
    cfg = make_cfg("experiment=skeleton_emotion_twin", f"method={method}", *SMOKE)
    run(cfg)
    payload = metrics_of(cfg)
    for key in (
        "test/acc",
        "test/macro_f1",
        "test/f1_angry",
        "test/f1_neutral",
        "test/f1_happy",
        "test/f1_sad",
    ):
        assert key in payload["metrics"], key
    assert (Path(cfg.paths.output_dir) / "confusion_test.png").is_file()


@pytest.mark.parametrize("method", FAST)
def test_paradigm_smoke_run(make_cfg, method):
    check_paradigm_run(make_cfg, method)


@pytest.mark.slow
@pytest.mark.parametrize("method", SLOW)
def test_paradigm_smoke_run_slow(make_cfg, method):
    check_paradigm_run(make_cfg, method)


def write_egait_with_a_bad_gait(root: Path) -> None:
    gaits = generate_gaits(40, 6, min_frames=16, max_frames=20, seed=3)
    with h5py.File(root / "features.h5", "w") as ff, h5py.File(root / "labels.h5", "w") as fl:
        for i, (seq, label) in enumerate(zip(gaits.sequences, gaits.labels, strict=True)):
            ff.create_dataset(f"g{i:02d}", data=seq.reshape(seq.shape[0], -1))
            fl.create_dataset(f"g{i:02d}", data=label)
        broken = gaits.sequences[0].reshape(gaits.sequences[0].shape[0], -1).copy()
        broken[5, 3] = np.nan
        ff.create_dataset("broken", data=broken)
        fl.create_dataset("broken", data=1)


def test_a_malformed_gait_is_skipped_named_and_counted(make_cfg, tmp_path):
    root = tmp_path / "egait"
    root.mkdir()
    write_egait_with_a_bad_gait(root)
    cfg = make_cfg(
        "experiment=skeleton_emotion_egait", "debug=fdr", f"dataset.root={root}", "method=skeleton_rf"
    )
    run(cfg)
    skipped = metrics_of(cfg)["skipped"]
    assert [(e["count"], e["examples"]) for e in skipped] == [(1, ["broken"])]
    assert "NaN" in skipped[0]["reason"] and skipped[0]["source"] == str(root)


def test_pyskl_twin_with_its_own_cross_subject_split(make_cfg):
    cfg = make_cfg(
        "experiment=skeleton_emotion_pyskl",
        *SMOKE,
        "dataset.split.train=xsub_train",
        "dataset.split.test=xsub_val",
        "method=skeleton_rf",
    )
    run(cfg)
    assert "test/acc" in metrics_of(cfg)["metrics"]


@pytest.mark.slow
def test_layout_mismatch_is_one_line_from_the_cli(tmp_path, data_dir):
    proc = run_cli(
        ["experiment=skeleton_emotion_egait", "dataset.synthetic=true", "dataset.layout=ntu25", "debug=fdr"],
        tmp_path,
        data_dir,
    )
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and "dataset.layout=ntu25 has 25 joints" in lines[0], proc.stderr[-2000:]
