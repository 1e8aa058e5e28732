"""The MGHFT experiments as users run them: smoke runs, every method through the real flow, user errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hydra.utils import instantiate

from runner.errors import UserError
from runner.train import run
from tests.conftest import REPO, run_cli

METHODS = [
    "mghft",
    "mghft_no_multiview",
    "mghft_no_lra",
    "mghft_no_stage_losses",
    "mghft_no_fusion",
    "mghft_release",
    "sticker_visual_pvt",
    "sticker_text_mlp",
    "sticker_late_fusion",
    "sticker_majority",
]


def test_missing_root_is_one_clear_line(make_cfg, tmp_path):
    cfg = make_cfg("experiment=mghft_ser30k", f"dataset.root={tmp_path / 'nowhere'}")
    with pytest.raises(Exception) as err:  # Hydra wraps it; the CLI prints the UserError's line
        instantiate(cfg.dataset)
    cause = err.value
    while cause is not None and not isinstance(cause, UserError):
        cause = cause.__cause__
    assert cause is not None and "\n" not in str(cause)
    assert "SER30K data not found" in str(cause) and "dataset.synthetic=true" in str(cause)


def test_the_twin_experiment_composes_at_twin_sizes(make_cfg):
    cfg = make_cfg("experiment=mghft_ser30k_twin")
    assert cfg.dataset.synthetic and cfg.dataset.crop_size == 64 and cfg.test_ckpt == "best"
    assert cfg.optimized_metric == "val/acc" and cfg.method.label_smoothing == 0.2
    assert list(cfg.model.num_heads) == [1, 2, 5, 8] and list(cfg.model.sr_ratios) == [8, 4, 2, 1]
    real = make_cfg("experiment=mghft_ser30k")
    assert (
        real.dataset.crop_size == 448
        and real.trainer.max_epochs == 50
        and list(real.model.depths) == [3, 4, 6, 3]
    )


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_every_method_runs_through_the_real_flow(make_cfg, method):
    cfg = make_cfg("experiment=mghft_ser30k_twin", "debug=fdr", f"method={method}")
    run(cfg)
    metrics = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())["metrics"]
    assert {"test/acc", "test/macro_f1", "val/acc", "train/acc", "train/macro_f1"} <= set(metrics)
    assert {f"test/f1/{c}" for c in ("happiness", "disgust")} <= set(metrics)


@pytest.mark.slow
def test_clip_probe_runs_with_a_random_small_tower(make_cfg):
    cfg = make_cfg(
        "experiment=mghft_ser30k_twin", "debug=fdr", "method=sticker_clip_probe", "method.clip_model=ViT-S-32"
    )
    run(cfg)
    assert "test/acc" in json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())["metrics"]


@pytest.mark.slow
@pytest.mark.parametrize("experiment", ["mghft_ser30k", "mghft_metmeme_twin"])
def test_smoke_run_from_the_command_line(tmp_path, data_dir, experiment):
    result = run_cli([f"experiment={experiment}", "debug=fdr", "dataset.synthetic=true"], tmp_path, data_dir)
    assert result.returncode == 0, result.stderr[-2000:]
    payload = json.loads(next((tmp_path / "logs").rglob("metrics.json")).read_text())
    assert payload["metrics"]["test/acc"] >= 0 and payload["corrupt_samples"]["count"] == 0


def test_readme_names_the_experiments():
    text = (REPO / "README.md").read_text()
    for name in ("mghft_ser30k", "mghft_metmeme", "mghft_ser30k_twin", "table=mghft"):
        assert name in text
