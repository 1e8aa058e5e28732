"""Shared fixtures: compose the real config tree in-process and run it on tiny synthetic twins."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from runner.compose import compose_run_config

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
EXPERIMENTS = sorted(p.stem for p in (CONF / "experiment").glob("*.yaml"))

# a twin small enough for tests (same generator and format as the default, fewer and smaller clips)
TINY_TWIN = [
    "dataset.synthetic=true",
    "dataset.twin.num_classes=4",
    "dataset.twin.clips_per_class=4",
    "dataset.twin.num_frames=8",
    "dataset.twin.size=32",
    "dataset.num_workers=0",
]
TINY_MODEL = ["model.width_factor=0.25", "model.depth_factor=0.2"]

# pyproject's per-test timeout (600 s) is sized for the fast tier; the slow tier runs whole sweeps and
# multi-process federations, so its tests get an hour unless they set their own
SLOW_TEST_TIMEOUT_S = 3600


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TEST_TIMEOUT_S))


def compose_config(overrides: list[str], root: Path, data_dir: Path) -> DictConfig:
    """The composed run config, as `python -m runner <overrides>` would see it, rooted in ``root``."""
    return compose_run_config(overrides, output_dir=root / "run", root_dir=root, data_dir=data_dir)


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """One data folder for the whole session, so each tiny twin is generated once."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def make_cfg(tmp_path, data_dir) -> Callable[..., DictConfig]:
    def factory(*overrides: str, root: Path | None = None) -> DictConfig:
        run_root = root or tmp_path
        run_root.mkdir(parents=True, exist_ok=True)
        return compose_config(list(overrides), run_root, data_dir)

    yield factory
    GlobalHydra.instance().clear()


def run_cli(
    args: list[str], cwd: Path, data_dir: Path | None = None, timeout: int = 600
) -> subprocess.CompletedProcess:
    """Run ``python -m runner <args>`` as a user would, in ``cwd``."""
    env = dict(os.environ)
    env.pop("HYDRA_FULL_ERROR", None)
    env["RUNNER_ROOT"] = str(cwd)
    env["WANDB_MODE"] = "offline"
    extra = [f"paths.data_dir={data_dir}"] if data_dir else []
    return subprocess.run(
        [sys.executable, "-m", "runner", *args, *extra],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
