"""runner.tracking without a training run: the run's identity, names, flattened config, and the
logger-agnostic table / image helpers (TensorBoard and files here; W&B in test_wandb_offline.py)."""

from __future__ import annotations

import csv

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger  # noqa: E402

from runner.tracking import (  # noqa: E402
    flatten,
    log_confusion_matrix,
    log_image,
    log_table,
    logged_config,
    run_name,
    wandb_run_fields,
)
from runner.utils import config_hash  # noqa: E402


def test_flatten_keeps_scalar_lists_and_serialises_the_rest():
    flat = flatten({"a": {"b": 1, "c": [1, 2]}, "d": [{"e": 1}], "f": None})
    assert flat == {"a.b": 1, "a.c": [1, 2], "d": '[{"e": 1}]', "f": None}


def test_logged_config_has_every_value_and_the_run_identity(make_cfg):
    cfg = make_cfg("experiment=nlgcl_yelp", "seed=3", "model.cl_reg=0.001")
    flat = logged_config(cfg)
    assert flat["model.cl_reg"] == 0.001 and flat["optimized_metric"] == "val/ndcg@10"
    assert flat["run.experiment"] == "nlgcl_yelp" and flat["run.seed"] == 3
    assert flat["run.config_hash"] == config_hash(cfg)
    assert flat["run.overrides"] == "experiment=nlgcl_yelp seed=3 model.cl_reg=0.001"
    assert "hydra.run.dir" not in flat


def test_wandb_name_group_and_job_type(make_cfg):
    cfg = make_cfg("experiment=fedpall_digits", "seed=2", "fl_strategy=fedavg", "paths.log_dir=/tmp/x")
    fields = wandb_run_fields(cfg, cfg.logger.get("wandb") or {})
    assert fields == {
        "name": "fedpall_digits fl_strategy=fedavg seed=2",  # placement overrides left out, seed last
        "group": "fedpall_digits",
        "job_type": "fedavg",  # the FL strategy is the method of a federated experiment
    }
    assert run_name(cfg) == fields["name"]
    pinned = wandb_run_fields(cfg, {"name": "mine", "group": None})
    assert "name" not in pinned and pinned["group"] == "fedpall_digits"


def test_tables_and_images_go_to_files_and_tensorboard(tmp_path):
    loggers = [CSVLogger(tmp_path, name="csv", version=""), TensorBoardLogger(tmp_path / "tb", name=None)]
    path = log_table(loggers, "test/summary", ["model", "acc"], [["student", 0.5], ["teacher", 0.75]])
    with open(path) as handle:
        assert list(csv.reader(handle)) == [["model", "acc"], ["student", "0.5"], ["teacher", "0.75"]]
    figure, ax = plt.subplots()
    ax.plot([0, 1])
    assert log_image(loggers, "curves", figure).stat().st_size > 1000
    plt.close(figure)
    log_confusion_matrix(loggers, "test/confusion_matrix", [[3, 1], [0, 4]], ["cat", "dog"])
    with open(tmp_path / "tables" / "test__confusion_matrix.csv") as handle:
        rows = list(csv.reader(handle))
    assert rows[1:] == [["cat", "cat", "3"], ["cat", "dog", "1"], ["dog", "cat", "0"], ["dog", "dog", "4"]]
    assert (tmp_path / "figures" / "test__confusion_matrix.png").is_file()
    loggers[1].experiment.flush()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    (events,) = (tmp_path / "tb").rglob("events.out.tfevents.*")
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    assert {"curves", "test/confusion_matrix"} <= set(accumulator.Tags()["images"])
    assert any("test/summary" in tag for tag in accumulator.Tags()["tensors"])
