"""The loggers carry the whole config, tables and figures; the W&B logger works offline (parsed here
without network); a resumed run continues the same W&B run."""

from __future__ import annotations

from pathlib import Path

import pytest

from runner import wandb_offline
from runner.report import CURVE_READERS, read_curves
from runner.train import run
from runner.utils import config_hash
from tests.conftest import TINY_MODEL, TINY_TWIN


def test_every_logger_gets_the_config_tables_and_figures(make_cfg, monkeypatch):
    """logger=many (CSV, TensorBoard, W&B offline): the W&B run folder, parsed without network, holds
    the flattened config with the run's identity, a name with overrides and seed, the confusion matrix
    as a table and the curves as an image; runner.report reads the same curves from each logger."""
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg = make_cfg(
        "experiment=video_supervised_hmdb_twin",
        "logger=many",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        *TINY_TWIN,
        *TINY_MODEL,
    )
    run(cfg)
    import wandb

    assert wandb.run is None  # finished
    output = Path(cfg.paths.output_dir)
    (run_dir,) = wandb_offline.run_folders(output)
    assert run_dir.name.startswith("offline-run-")

    info = wandb_offline.run_info(run_dir)
    config = info["config"]
    assert config["dataset.batch_size"] == cfg.dataset.batch_size
    assert config["trainer.max_epochs"] == 2
    assert config["run.seed"] == cfg.seed
    assert config["run.config_hash"] == config_hash(cfg)
    assert config["run.experiment"] == "video_supervised_hmdb_twin"
    assert "trainer.max_epochs=2" in config["run.overrides"]
    assert "run.git_commit" in config
    assert info["name"].endswith(f"seed={cfg.seed}") and "trainer.max_epochs=2" in info["name"]
    assert info["group"] == cfg.task_name
    assert info["job_type"] == "video_supervised"  # the method

    tables = wandb_offline.tables(run_dir)
    confusion = tables["test/confusion_matrix"]
    assert confusion["columns"] == ["true", "predicted", "count"]
    assert sum(row[2] for row in confusion["data"]) > 0
    media = [row for row in wandb_offline.history(run_dir) if "curves" in row]
    assert media and media[-1]["curves"]["_type"].startswith("images")
    assert (output / "figures" / "curves.png").is_file()
    assert (output / "tables" / "test__confusion_matrix.csv").is_file()

    curves = {name: read(output) for name, read in CURVE_READERS.items()}
    assert all(frame is not None for frame in curves.values()), curves
    from_csv = read_curves(output)
    assert from_csv["val/acc"].keys() == {0, 1}
    for name in ("tensorboard", "wandb"):  # the same validation curve from every logger
        only = {k: v for k, v in CURVE_READERS.items() if k == name}
        monkeypatch.setattr("runner.report.CURVE_READERS", only)
        assert read_curves(output)["val/acc"] == pytest.approx(from_csv["val/acc"]), name


def test_resume_continues_the_same_wandb_run(make_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    limits = ["trainer.limit_train_batches=1", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1"]
    experiment = "experiment=video_supervised_hmdb_twin"
    first = make_cfg(
        experiment,
        "logger=wandb",
        "trainer.max_epochs=1",
        *limits,
        *TINY_TWIN,
        *TINY_MODEL,
        root=tmp_path / "a",
    )
    run(first)
    (first_run,) = (Path(first.paths.output_dir) / "wandb").glob("offline-run-*")
    run_id = first_run.name.rsplit("-", 1)[-1]

    ckpt = Path(first.paths.output_dir) / "checkpoints" / "last.ckpt"
    resumed = make_cfg(
        experiment,
        "logger=wandb",
        "trainer.max_epochs=2",
        f"ckpt_path={ckpt}",
        *limits,
        *TINY_TWIN,
        *TINY_MODEL,
        root=tmp_path / "b",
    )
    run(resumed)
    (second_run,) = (Path(resumed.paths.output_dir) / "wandb").glob("offline-run-*")
    assert second_run.name.rsplit("-", 1)[-1] == run_id
