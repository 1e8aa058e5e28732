"""hparams_search for every family through runner's Optuna sweeper (Optuna 4/5): the search space
composes with the family's experiments and follows each experiment's metric and direction; the study
lives in SQLite in the sweep folder, so a killed search resumes; the joblib launcher runs trials in
parallel with one torch thread each on CPU."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hydra_plugins.runner_optuna_sweeper.sweeper import RunnerOptunaSweeper, distribution_of
from tests.conftest import CONF, TINY_MODEL, TINY_TWIN

FAMILIES = {
    "video_optuna": ["video_supervised_hmdb_twin", "dual_teacher_hmdb_twin"],
    "fl_optuna": ["byrd_nafl_mnist", "fedavg_mnist", "fedsm_cifar10lt", "fedpall_digits", "co_pfl_cifar10"],
    "recsys_optuna": ["nlgcl_yelp", "lightgcn_yelp", "sgl_pinterest", "bprmf_alibaba"],
    "ccd_optuna": ["ccd_synthetic"],
}


def test_every_optuna_search_config_is_covered():
    assert {p.stem for p in (CONF / "hparams_search").glob("*_optuna.yaml")} == set(FAMILIES)


@pytest.mark.parametrize(
    ("search", "experiment"), [(s, e) for s, experiments in FAMILIES.items() for e in experiments]
)
def test_search_space_matches_the_experiment(make_cfg, search, experiment):
    cfg = make_cfg(f"experiment={experiment}", f"hparams_search={search}")
    sweeper = HydraConfig.get().sweeper
    assert sweeper._target_.endswith("RunnerOptunaSweeper")
    assert HydraConfig.get().mode.name == "MULTIRUN"
    for key in sweeper.params:  # every searched key is a value of this experiment's config
        assert OmegaConf.select(cfg, key) is not None, f"{experiment} has no {key}"
    assert sweeper.direction == cfg.optimized_mode
    assert sweeper.study_name == cfg.task_name
    # the experiment's own metric, not a hard-coded val/acc
    own = OmegaConf.load(CONF / "experiment" / f"{experiment}.yaml").get("optimized_metric", "val/acc")
    assert cfg.optimized_metric == own


def test_direction_follows_optimized_mode(make_cfg):
    cfg = make_cfg("experiment=nlgcl_yelp", "hparams_search=recsys_optuna", "optimized_mode=min")
    assert HydraConfig.get().sweeper.direction == "min"
    assert cfg.callbacks.model_checkpoint.mode == "min"
    assert RunnerOptunaSweeper(direction="min").direction == "minimize"
    with pytest.raises(ValueError, match="direction"):
        RunnerOptunaSweeper(direction="up")


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("interval(0.001, 0.1)", FloatDistribution(0.001, 0.1)),
        ("tag(log, interval(1e-4, 1e-1))", FloatDistribution(1e-4, 1e-1, log=True)),
        ("int(interval(2, 8))", IntDistribution(2, 8)),
        ("tag(log, int(interval(8, 64)))", IntDistribution(8, 64, log=True)),
        ("range(1, 10, 3)", IntDistribution(1, 7, step=3)),
        ("choice(x3d_s, r3d_18)", CategoricalDistribution(["x3d_s", "r3d_18"])),
        ("0.1,0.2", CategoricalDistribution([0.1, 0.2])),
    ],
)
def test_sweep_expressions_map_to_optuna_distributions(expression, expected):
    (override,) = OverridesParser.create().parse_overrides([f"key={expression}"])
    assert distribution_of(override) == expected


# ---- real searches (slow tier) -----------------------------------------------------------------
SEARCH = [
    "experiment=video_supervised_hmdb_twin",
    "hparams_search=video_optuna",
    "debug=fdr",
    *TINY_TWIN,
    *TINY_MODEL,
]


def _command(tmp_path: Path, data_dir: Path, sweep_dir: Path, *extra: str) -> tuple[list[str], dict]:
    env = {**os.environ, "RUNNER_ROOT": str(tmp_path), "WANDB_MODE": "offline"}
    env.pop("HYDRA_FULL_ERROR", None)
    args = [*SEARCH, f"paths.data_dir={data_dir}", f"hydra.sweep.dir={sweep_dir}", *extra]
    return [sys.executable, "-m", "runner", "-m", *args], env


def _study(sweep_dir: Path):
    import optuna

    return optuna.load_study(study_name="debug", storage=f"sqlite:///{sweep_dir / 'optuna.db'}")


@pytest.mark.slow
def test_killed_search_resumes_from_its_sqlite_study(tmp_path, data_dir):
    from optuna.trial import TrialState

    sweep_dir = tmp_path / "sweep"
    command, env = _command(tmp_path, data_dir, sweep_dir, "hydra.sweeper.n_trials=3")
    first = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.time() + 600
    while not (sweep_dir / "0" / "metrics.json").is_file():
        assert first.poll() is None, "the search ended before it could be killed"
        assert time.time() < deadline, "the first trial did not finish in 10 minutes"
        time.sleep(0.5)
    os.killpg(first.pid, signal.SIGKILL)  # as a user's Ctrl-\ or an out-of-memory kill would
    first.wait()
    first_job = (sweep_dir / "0" / "metrics.json").read_text()
    before = {t.number: t.state for t in _study(sweep_dir).trials}
    assert before[0] == TrialState.COMPLETE
    assert len([s for s in before.values() if s == TrialState.COMPLETE]) < 3

    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    study = _study(sweep_dir)
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 3  # n_trials counts the trials of both processes
    assert (sweep_dir / "0" / "metrics.json").read_text() == first_job  # trial 0 was not run again
    interrupted = [n for n, s in before.items() if s == TrialState.RUNNING]
    for number in interrupted:  # a trial killed mid-run is failed and its parameters run again
        assert study.trials[number].state == TrialState.FAIL
        assert any(t.params == study.trials[number].params for t in complete)
    for trial in complete:
        metrics = json.loads((sweep_dir / str(trial.number) / "metrics.json").read_text())
        assert metrics["objective"]["value"] == pytest.approx(trial.value)
    best = OmegaConf.load(sweep_dir / "optimization_results.yaml")
    assert best.metric == "val/acc" and best.best_value == max(t.value for t in complete)


@pytest.mark.slow
def test_joblib_launcher_runs_trials_in_parallel_with_one_torch_thread_each(tmp_path, data_dir):
    sweep_dir = tmp_path / "sweep"
    command, env = _command(
        tmp_path,
        data_dir,
        sweep_dir,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.n_trials=2",
    )
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Joblib.Parallel" in result.stdout + result.stderr
    for job in ("0", "1"):
        metrics = json.loads((sweep_dir / job / "metrics.json").read_text())
        assert metrics["torch_threads"] == 1
        assert metrics["objective"]["value"] is not None


@pytest.mark.slow
def test_a_failed_job_under_the_joblib_launcher_still_fails_the_sweep(tmp_path, data_dir):
    """Jobs of a parallel launcher run in other processes; their failures still reach the exit code."""
    env = {**os.environ, "RUNNER_ROOT": str(tmp_path), "WANDB_MODE": "offline"}
    env.pop("HYDRA_FULL_ERROR", None)
    args = [
        "experiment=video_supervised_hmdb_twin",
        "debug=fdr",
        "method.optimizer.lr=0.05,-1",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        *TINY_TWIN,
        *TINY_MODEL,
        f"paths.data_dir={data_dir}",
    ]
    result = subprocess.run(
        [sys.executable, "-m", "runner", "-m", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert "1 of 2 job(s) failed" in output
