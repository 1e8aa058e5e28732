"""Cluster sweeps: the ``hydra/launcher`` configs compose, and a 2-job sweep runs through submitit's
local executor (the same job layout as on SLURM) and ``runner.report`` reads it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import run_cli


@pytest.mark.parametrize(
    ("launcher", "plugin", "target"),
    [
        ("slurm", "hydra_plugins.hydra_submitit_launcher", "SlurmLauncher"),
        ("submitit", "hydra_plugins.hydra_submitit_launcher", "LocalLauncher"),
        ("ray_cluster", "hydra_plugins.hydra_ray_launcher", "RayLauncher"),
    ],
)
def test_launcher_configs_compose(launcher, plugin, target, tmp_path):
    pytest.importorskip(plugin)
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="runner.conf", version_base="1.3"):
        cfg = compose(
            config_name="config",
            overrides=[f"hydra/launcher={launcher}", "experiment=fedavg_mnist"],
            return_hydra_config=True,
        )
    GlobalHydra.instance().clear()
    assert cfg.hydra.launcher._target_.endswith(target)


@pytest.mark.slow
def test_submitit_local_sweep_is_read_by_the_report(tmp_path, data_dir):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "sweep"
    result = run_cli(
        [
            "-m",
            "hydra/launcher=submitit",
            "torch_threads=1",
            "experiment=fedavg_mnist",
            "trainer.max_epochs=1",
            "dataset.rounds_per_epoch=2",
            "dataset.num_clients=4",
            "seed=0,1",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
        data_dir=data_dir,
        timeout=1200,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    # the jobs ran as submitit jobs (their pickled job and logs are in the sweep's .submitit folder)
    submitted = list((sweep / ".submitit").glob("*/*_submitted.pkl"))
    assert len(submitted) == 2, sorted(p.name for p in (sweep / ".submitit").rglob("*"))
    for job in ("0", "1"):
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert metrics["seed"] == int(job)
        assert metrics["metrics"]["test/acc"] > 0.1  # above chance (10 classes)
    report = subprocess.run(
        [sys.executable, "-m", "runner.report", str(sweep)], capture_output=True, text=True, timeout=300
    )
    assert report.returncode == 0, report.stdout + report.stderr
    table = (sweep / "report.md").read_text()
    assert "test/acc" in table
    assert "| 0,1 |" in table  # one group (the overrides other than seed), both seeds


@pytest.mark.slow
def test_ray_launcher_sweep_is_read_by_the_report(tmp_path, data_dir):
    """hydra-ray-launcher (a local Ray instance): 2 smoke jobs. It runs here with cloudpickle 3
    although it pins cloudpickle<3 (see README "Beyond one machine")."""
    pytest.importorskip("hydra_plugins.hydra_ray_launcher")
    sweep = tmp_path / "sweep"
    result = run_cli(
        [
            "-m",
            "hydra/launcher=ray_cluster",
            "torch_threads=1",
            "experiment=fedavg_mnist",
            "debug=fdr",
            "seed=0,1",
            f"hydra.sweep.dir={sweep}",
        ],
        cwd=tmp_path,
        data_dir=data_dir,
        timeout=1200,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Ray" in result.stdout + result.stderr
    for job in ("0", "1"):
        assert json.loads((sweep / job / "metrics.json").read_text())["seed"] == int(job)
    report = subprocess.run(
        [sys.executable, "-m", "runner.report", str(sweep)], capture_output=True, text=True, timeout=300
    )
    assert report.returncode == 0, report.stdout + report.stderr
    assert "| 0,1 |" in (sweep / "report.md").read_text()
