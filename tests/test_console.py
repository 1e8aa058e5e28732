"""What a person reads: a short run summary (the full tree goes to the run folder), one message
naming everything a real-data dual-teacher run lacks, and a last line listing what was written."""

from __future__ import annotations

import logging

import pytest

from runner.errors import UserError
from runner.train import run
from runner.utils import print_and_save_config, quiet_duplicate_lightning_console, run_summary, written_files


def test_summary_is_short_and_names_the_run(make_cfg, tmp_path, capsys):
    cfg = make_cfg("experiment=dual_teacher_hmdb", "dataset.synthetic=true", "debug=fdr")
    lines = dict(run_summary(cfg, tmp_path))
    assert len(lines) <= 10
    assert lines["experiment"].startswith("dual_teacher_hmdb")
    assert "synthetic twin" in lines["data"] and "recipe/twin/dual_teacher_hmdb.yaml" in lines["data"]
    assert "student X3D (x3d_s)" in lines["model"] and "teacher vit TinyVideoTransformer" in lines["model"]
    assert "DualTeacherDistillation" in lines["method"] and "debug=fdr" in lines["trainer"]
    print_and_save_config(cfg, tmp_path)
    shown = capsys.readouterr().out
    assert len(shown.strip().splitlines()) <= 10 and "CONFIG" not in shown
    assert "teacher_training" in (tmp_path / "config_tree.log").read_text()  # the full tree, in the folder
    assert (tmp_path / "config_resolved.yaml").is_file()
    assert written_files(tmp_path) == ["config_resolved.yaml", "config_tree.log"]


def test_missing_data_names_the_teachers_too(make_cfg, tmp_path):
    cfg = make_cfg("experiment=dual_teacher_hmdb", f"dataset.root={tmp_path / 'nowhere'}")
    with pytest.raises(UserError) as err:
        run(cfg)
    message = str(err.value)
    assert "nowhere" in message and "dataset.synthetic=true" in message
    assert "method.teachers.cnn.checkpoint and method.teachers.vit.checkpoint" in message
    assert "50 epochs" in message and "\n" not in message


def test_lightning_lines_are_printed_once():
    root = logging.getLogger()
    added = logging.StreamHandler() if not root.handlers else None  # as under Hydra's job logging
    if added:
        root.addHandler(added)
    try:
        quiet_duplicate_lightning_console()
        own = [h for h in logging.getLogger("lightning").handlers if type(h) is logging.StreamHandler]
        assert not own  # records reach the root's handlers (console + the run's log file) only
    finally:
        if added:
            root.removeHandler(added)
