"""Every config composes: each experiment, and each option of each config group."""

from __future__ import annotations

import pytest
from hydra.utils import instantiate

from tests.conftest import CONF, EXPERIMENTS

GROUP_OPTIONS = [
    (group, p.stem)
    for group in (
        "trainer",
        "logger",
        "callbacks",
        "debug",
        "model",
        "dataset",
        "method",
        "teacher/cnn",
        "teacher/vit",
        "student",
    )
    for p in sorted((CONF / group).glob("*.yaml"))
]


def test_there_are_experiments():
    assert "video_supervised_hmdb_twin" in EXPERIMENTS
    assert {"video_supervised_hmdb", "video_supervised_epic", "video_supervised_k400"} <= set(EXPERIMENTS)


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_experiment_composes(make_cfg, experiment):
    cfg = make_cfg(f"experiment={experiment}")
    assert cfg.task_name
    for key in ("dataset", "method", "trainer", "callbacks", "paths"):
        assert key in cfg, f"{experiment} lacks {key}"
    assert "model" in cfg or "student" in cfg, f"{experiment} has no network (model or student)"
    assert "_target_" in cfg.dataset and "_target_" in cfg.method


@pytest.mark.parametrize(("group", "option"), GROUP_OPTIONS)
def test_group_option_composes(make_cfg, group, option):
    """Each option composes on the supervised video experiment (the default experiment, dual-teacher
    KD, pins a ViT-teacher entry that only the distillation methods have)."""
    base = [] if group == "experiment" else ["experiment=video_supervised_hmdb_twin"]
    cfg = make_cfg(*base, f"{group}={option}")
    assert cfg is not None


def test_callbacks_and_loggers_instantiate(make_cfg, tmp_path):
    cfg = make_cfg("logger=many", "callbacks=early_stopping")
    callbacks = [instantiate(c) for c in cfg.callbacks.values() if c is not None]
    names = {type(c).__name__ for c in callbacks}
    assert {"ModelCheckpoint", "EarlyStopping", "RichProgressBar", "RNGStateCallback"} <= names
    assert set(cfg.logger) == {"csv", "tensorboard", "wandb"}
    assert cfg.logger.wandb.offline is True
    loggers = [instantiate(cfg.logger[name]) for name in ("csv", "tensorboard")]
    assert [type(lg).__name__ for lg in loggers] == ["CSVLogger", "TensorBoardLogger"]


def test_default_run_dir_has_microseconds():
    text = (CONF / "hydra" / "default.yaml").read_text()
    assert "%f" in text.split("run:")[1].split("sweep:")[0]


def test_teacher_and_student_reuse_the_model_networks(make_cfg):
    """Dual-teacher experiments take the student from the student group and each teacher from its
    slot group: one short override swaps either."""
    cfg = make_cfg("experiment=dual_teacher_hmdb", "student=x3d_xs", "teacher/cnn=r2plus1d_18")
    assert "model" not in cfg or cfg.model is None
    assert cfg.student._target_ == "runner.models.video.X3D" and cfg.student.variant == "xs"
    assert cfg.method.teachers.cnn.net.arch == "r2plus1d_18"
    assert cfg.method.teachers.vit.net.arch == "mvit_v2_s"
    assert cfg.method.teachers.cnn.net._partial_ is True


def test_synthetic_true_selects_the_twin_sized_recipe(make_cfg):
    """dataset.synthetic=true on a real-data experiment brings its twin recipe (here: what the default
    twin experiment uses), and the user's own overrides still win over it."""
    twin = make_cfg("experiment=dual_teacher_hmdb_twin")
    real = make_cfg("experiment=dual_teacher_hmdb", "dataset.synthetic=true", "trainer.max_epochs=3")
    assert real.dataset.synthetic is True
    assert real.method.teachers.vit.net._target_.endswith("TinyVideoTransformer")
    assert real.method.teachers.vit.net == twin.method.teachers.vit.net
    assert real.student == twin.student and real.method.distill == twin.method.distill
    assert real.trainer.max_epochs == 3
    paper = make_cfg("experiment=dual_teacher_hmdb", "dataset.synthetic=false")
    assert paper.dataset.synthetic is False and paper.method.teachers.vit.net.arch == "mvit_v2_s"
