"""The whole flow with the teacher-output cache: teachers trained on first use and cached by hash,
the cache filled once, and the training steps reading it instead of running the teachers."""

from __future__ import annotations

import json
from pathlib import Path

from runner.methods.dual_teacher import cache as cache_module
from runner.methods.dual_teacher.module import DualTeacherDistillation
from runner.train import run
from tests.test_experiments_fdr import SMOKE


def test_cached_run_reads_teacher_outputs_from_the_store(make_cfg, monkeypatch):
    reads, online = [], []
    original_read = cache_module.TeacherOutputCache.read
    original_run = DualTeacherDistillation._run_teachers

    def counting_read(self, clip_ids, view_index, **kwargs):
        reads.append(len(clip_ids))
        return original_read(self, clip_ids, view_index, **kwargs)

    def counting_run(self, batch):
        online.append("view_index" in batch)
        return original_run(self, batch)

    monkeypatch.setattr(cache_module.TeacherOutputCache, "read", counting_read)
    monkeypatch.setattr(DualTeacherDistillation, "_run_teachers", counting_run)
    experiment = "dual_teacher_hmdb_twin"
    cfg = make_cfg(
        f"experiment={experiment}",
        *SMOKE,
        "method.distill.cache=true",
        "method.distill.cache_views=2",
    )
    run(cfg)
    assert reads, "the training step never read the cache"
    # teachers ran only to fill the cache (batches with a view index) and at test time (without)
    assert online.count(True) >= 1 and online.count(False) >= 1
    stores = [p for p in Path(cfg.method.distill.cache_dir).iterdir() if (p / "meta.json").is_file()]
    assert stores
    meta = json.loads((stores[0] / "meta.json").read_text())
    assert set(meta["teacher_hashes"]) == {"cnn", "vit"}
    assert len(list(Path(cfg.method.distill.teacher_training.cache_dir).glob("*.pt"))) >= 2
    metrics = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())["metrics"]
    assert {"test/teacher_cnn_acc", "test/teacher_vit_acc", "train/kd_weight_cnn"} <= set(metrics)
