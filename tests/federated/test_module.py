"""The FL experiment flow through runner.train.run: exact resume, loud failures, config errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from runner.errors import UserError
from runner.federated.module import NonFiniteUpdate
from runner.train import run

TINY = [
    "experiment=byrd_nafl_mnist",
    "dataset.twin.train_size=300",
    "dataset.twin.test_size=60",
    "dataset.num_clients=6",
    "dataset.rounds_per_epoch=2",
    "model.channels=[2,4]",
    "model.hidden=8",
    "fl_strategy.batch_size=8",
    "logger=csv",
    "callbacks.rich_progress_bar=null",
]


def final_state(root: Path) -> dict:
    ckpt = torch.load(root / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    return {"model": ckpt["state_dict"], "optimizer": ckpt["optimizer_states"], "step": ckpt["global_step"]}


@pytest.mark.parametrize(
    "variant",
    [
        ["fl_strategy.aggregator=krum", "fl_strategy.attack=alie"],
        [
            "fl_strategy.aggregator=centered_clipping",
            "fl_strategy.momentum_at=clients",
            "fl_strategy.acceleration=heavy_ball",
            "fl_strategy.attack=label_flip",
        ],
    ],
    ids=["server_nesterov", "client_momentum"],
)
def test_resume_equals_uninterrupted(make_cfg, tmp_path, variant):
    straight = make_cfg(*TINY, *variant, "trainer.max_epochs=2", root=tmp_path / "a")
    run(straight)
    first = make_cfg(*TINY, *variant, "trainer.max_epochs=1", root=tmp_path / "b")
    run(first)
    resumed = make_cfg(
        *TINY,
        *variant,
        "trainer.max_epochs=2",
        f"ckpt_path={tmp_path / 'b' / 'run' / 'checkpoints' / 'last.ckpt'}",
        root=tmp_path / "c",
    )
    run(resumed)
    a, c = final_state(tmp_path / "a"), final_state(tmp_path / "c")
    assert a["step"] == c["step"] == 4  # global step = rounds
    assert a["model"].keys() == c["model"].keys()
    assert any("state." in k for k in a["model"]) or "momentum_at=clients" not in " ".join(variant)
    for key in a["model"]:
        assert torch.equal(a["model"][key], c["model"][key]), key
    assert str(a["optimizer"]) == str(c["optimizer"])
    metrics_a = json.loads((tmp_path / "a" / "run" / "metrics.json").read_text())["metrics"]
    metrics_c = json.loads((tmp_path / "c" / "run" / "metrics.json").read_text())["metrics"]
    assert metrics_a["test/acc"] == metrics_c["test/acc"]


def test_round_logs_and_class_count_table(make_cfg, tmp_path):
    cfg = make_cfg(
        *TINY,
        "trainer.max_epochs=2",
        "dataset.rounds_per_epoch=3",
        "fl_strategy=fedavg",
    )
    run(cfg)
    out = Path(cfg.paths.output_dir)
    rows = list(csv.DictReader(open(out / "client_class_counts.csv")))
    # the training partition: 300 images less each client's 10 % validation hold-out (dataset.val_fraction)
    assert len(rows) == 6 and sum(int(r["total"]) for r in rows) == 270
    logged = list(csv.DictReader(open(next(out.glob("csv/**/metrics.csv")))))
    assert sum(1 for r in logged if r.get("val/acc")) == 2  # validation every epoch (= 3 rounds)
    metrics = json.loads((out / "metrics.json").read_text())["metrics"]
    assert metrics["fl/round"] == 6 and 0 <= metrics["test/acc"] <= 1
    assert 0 <= metrics["train/acc"] <= 1  # the tested model on the training partitions (issue 16)


def test_nonfinite_honest_update_names_round_and_client(make_cfg):
    cfg = make_cfg(*TINY, "trainer.max_epochs=1", "fl_strategy.local_lr=1e30", "fl_strategy.local_steps=3")
    with pytest.raises(NonFiniteUpdate, match=r"round 0: honest client\(s\) \["):
        run(cfg)


def test_byzantine_fraction_beyond_rule_bound_is_a_user_error(make_cfg):
    cfg = make_cfg(*TINY, "fl_strategy.aggregator=bulyan", "fl_strategy.byzantine_fraction=0.34")
    with pytest.raises(UserError, match=r"n >= 4f \+ 3"):
        run(cfg)


def test_vectorized_execution_runs_in_the_flow(make_cfg):
    cfg = make_cfg(*TINY, "debug=fdr", "method.execution=vectorized", "dataset.synthetic=true")
    run(cfg)
