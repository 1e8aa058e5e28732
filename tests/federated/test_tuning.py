"""Per-setting selection of a swept hyperparameter on a validation metric (runner.federated.tuning)."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from runner.federated.tuning import best_values, main
from runner.report import load_jobs


def fake_sweep(root: Path) -> Path:
    """Two methods x three server_lr values x two seeds; val/acc peaks at a different lr per method,
    and test/acc is highest where val/acc is not (the selection must not look at it)."""
    val = {
        ("robust_sgd", "0.01"): 0.5,
        ("robust_sgd", "0.1"): 0.8,
        ("robust_sgd", "1.0"): 0.6,
        ("heavy_ball", "0.01"): 0.85,
        ("heavy_ball", "0.1"): 0.7,
        ("heavy_ball", "1.0"): float("nan"),
    }
    job = 0
    for (method, lr), score in val.items():
        for seed in (0, 1):
            folder = root / str(job)
            (folder / ".hydra").mkdir(parents=True)
            overrides = [f"fl_strategy={method}", f"fl_strategy.server_lr={lr}", f"seed={seed}"]
            (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
            metrics = {"val/acc": score + 0.01 * seed, "test/acc": 0.99 if lr == "1.0" else score - 0.05}
            (folder / "metrics.json").write_text(json.dumps({"seed": seed, "metrics": metrics}))
            job += 1
    return root


def test_each_setting_at_its_best_value_on_validation(tmp_path, capsys):
    sweep = fake_sweep(tmp_path / "multirun")
    chosen = best_values(load_jobs(sweep), "fl_strategy.server_lr", "val/acc")
    assert chosen["fl_strategy=robust_sgd"]["best"] == "0.1"
    assert chosen["fl_strategy=heavy_ball"]["best"] == "0.01"  # the diverged (NaN) value is never chosen
    assert len(chosen["fl_strategy=robust_sgd"]["jobs"]) == 2
    assert main([str(sweep), "--tune", "fl_strategy.server_lr", "--select", "val/acc"]) == 0
    table = (sweep / "tuning.md").read_text()
    assert "| fl_strategy=heavy_ball | 0.01 | 0,1 | 0.8550 ± 0.0071 | 0.8000 ± 0.0000 |" in table
    assert main([str(sweep), "--tune", "fl_strategy.server_lr", "--select", "test/acc"]) == 2
    assert "select on a validation metric" in capsys.readouterr().err
