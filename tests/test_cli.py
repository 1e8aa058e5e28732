"""`python -m runner` as a user runs it: one-line errors for user mistakes, non-zero exits."""

from __future__ import annotations

import pytest

from tests.conftest import TINY_TWIN, run_cli


def assert_one_line_error(result, *fragments):
    assert result.returncode != 0, result.stdout + result.stderr
    err_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(err_lines) == 1, result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == err_lines[0], "the error is the last thing printed"
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in err_lines[0], err_lines[0]


def test_unknown_experiment_lists_valid_names(tmp_path):
    result = run_cli(["experiment=nope"], tmp_path)
    assert_one_line_error(
        result, "unknown experiment 'nope'", "video_supervised_hmdb", "video_supervised_k400"
    )


def test_unknown_group_option(tmp_path):
    result = run_cli(["model=resnet9000"], tmp_path)
    assert_one_line_error(result, "unknown model option 'resnet9000'", "x3d_s")


def test_missing_dataset_root_names_path_and_twin(tmp_path):
    result = run_cli(["experiment=video_supervised_hmdb", f"dataset.root={tmp_path}/no_hmdb"], tmp_path)
    assert_one_line_error(result, f"{tmp_path}/no_hmdb", "dataset.synthetic=true")


@pytest.mark.parametrize(
    ("override", "fragments"),
    [
        ("method.optimizer.lr=-1", ("method.optimizer.lr=-1", "> 0")),
        ("dataset.sampling=sparse", ("dataset.sampling='sparse'", "dense", "uniform")),
    ],
)
def test_invalid_values_name_key_value_and_allowed(tmp_path, override, fragments):
    result = run_cli([override, *TINY_TWIN], tmp_path)
    assert_one_line_error(result, *fragments)


def test_full_error_shows_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    import os
    import subprocess
    import sys

    env = dict(os.environ, RUNNER_ROOT=str(tmp_path))
    result = subprocess.run(
        [sys.executable, "-m", "runner", "method.optimizer.lr=-1", *TINY_TWIN],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0
    assert "Traceback" in result.stderr


def test_method_without_experiment_is_one_line(tmp_path, data_dir):
    result = run_cli(["method=ccd"], tmp_path, data_dir=data_dir)
    assert result.returncode == 2
    assert "method=ccd needs an experiment" in result.stderr
    assert "Traceback" not in result.stderr
