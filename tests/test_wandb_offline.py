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
