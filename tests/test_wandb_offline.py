"""The W&B logger works offline: the run writes its offline-run directory, and wandb.finish() is called."""

from __future__ import annotations

from pathlib import Path

from runner.train import run
from tests.conftest import TINY_MODEL, TINY_TWIN


def test_wandb_offline_run_directory(make_cfg, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    cfg = make_cfg(
        "logger=wandb",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=1",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        *TINY_TWIN,
        *TINY_MODEL,
    )
    run(cfg)
    runs = list((Path(cfg.paths.output_dir) / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list(Path(cfg.paths.output_dir).rglob("*"))[:20]
    assert any(runs[0].glob("*.wandb")) or any(runs[0].rglob("*.wandb"))

    import wandb

    assert wandb.run is None  # finished


def test_resume_continues_the_same_wandb_run(make_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    limits = ["trainer.limit_train_batches=1", "trainer.limit_val_batches=1", "trainer.limit_test_batches=1"]
    first = make_cfg(
        "logger=wandb", "trainer.max_epochs=1", *limits, *TINY_TWIN, *TINY_MODEL, root=tmp_path / "a"
    )
    run(first)
    (first_run,) = (Path(first.paths.output_dir) / "wandb").glob("offline-run-*")
    run_id = first_run.name.rsplit("-", 1)[-1]

    ckpt = Path(first.paths.output_dir) / "checkpoints" / "last.ckpt"
    resumed = make_cfg(
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
