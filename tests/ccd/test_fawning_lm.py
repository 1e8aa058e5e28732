"""The in-project LM really fawns and CCD helps (slow: trains the default LM, a few minutes on 2 cores).

The fast tier checks the same flow end to end on a tiny twin and a one-step LM (debug=fdr,
conf/smoke/fdr/ccd_synthetic.yaml);
the recorded three-seed numbers are in experiments/ccd/results.md.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner.train import run


@pytest.mark.slow
def test_default_lm_fawns_and_ccd_recovers(make_cfg):
    cfg = make_cfg("experiment=ccd_synthetic", "logger=csv")
    run(cfg)
    metrics = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())["metrics"]
    clean, induced = metrics["test/greedy/clean_acc"], metrics["test/greedy/induced_acc"]
    assert induced < clean - 0.3, "the trained LM does not fawn"
    assert metrics["test/greedy/fawning_rate"] > 0.5
    assert metrics["test/ccd/induced_acc"] > induced + 0.3
    assert metrics["test/ccd/fawning_rate"] < metrics["test/greedy/fawning_rate"] - 0.3
    assert abs(metrics["test/ccd/clean_acc"] - clean) <= 0.01


def test_ccd_experiment_flow_logs_every_metric(make_cfg):
    """A tiny end-to-end run through runner.train.run (no fast_dev_run: the whole test loop)."""
    cfg = make_cfg(
        "experiment=ccd_synthetic",
        "dataset.twin.num_entities=4",
        "dataset.twin.train_dialogues=64",
        "dataset.twin.val_dialogues=16",
        "dataset.twin.eval_per_task=3",
        "model.max_steps=2",
        "model.batch_size=8",
        "model.n_embd=16",
        "model.n_head=2",
        "model.vocab_size=400",
        "logger=csv",
    )
    run(cfg)
    payload = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    metrics = payload["metrics"]
    for decoder in ("greedy", "ccd", "cd", "neutral_oracle"):
        for task in ("qa", "sentiment", "nli"):
            assert f"test/{decoder}/{task}/clean/acc" in metrics
            for paradigm in ("A", "B"):
                assert 0.0 <= metrics[f"test/{decoder}/{task}/{paradigm}/fawning"] <= 1.0
    assert payload["objective"]["value"] == metrics["test/ccd/induced_acc"]
    # the LM is cached as a HF model dir under <data_dir>/lm/<recipe hash>/
    cached = list((Path(cfg.paths.data_dir) / "lm").glob("*/config.json"))
    assert cached
