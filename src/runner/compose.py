"""Compose a run config in-process, as ``python -m runner <overrides>`` would, for scripts and tests.

The reproduction scripts in ``experiments/`` and the test suite run many experiments in one
process; this gives them the same composed config the CLI builds, rooted in a folder of their
choice (``${hydra:...}`` values are fixed to that folder so that several configs can coexist).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_module
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from runner.overrides import with_data_choice


def compose_run_config(
    overrides: Sequence[str],
    output_dir: str | Path,
    root_dir: str | Path,
    data_dir: str | Path | None = None,
    log_dir: str | Path | None = None,
) -> DictConfig:
    """The composed config of one run writing to ``output_dir``.

    ``root_dir`` stands for the folder the command is started in; ``data_dir`` (default
    ``<root_dir>/data``) and ``log_dir`` (default ``<root_dir>/logs``) as in ``conf/paths``.
    """
    GlobalHydra.instance().clear()
    with initialize_config_module(config_module="runner.conf", version_base="1.3"):
        cfg = compose(config_name="config", overrides=with_data_choice(overrides), return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.root_dir = str(root_dir)
        if data_dir is not None:
            cfg.paths.data_dir = str(data_dir)
        cfg.paths.log_dir = str(log_dir if log_dir is not None else Path(root_dir) / "logs")
        cfg.paths.work_dir = str(root_dir)
        cfg.paths.output_dir = str(output_dir)
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.runtime.cwd = str(root_dir)
        cfg.hydra.job.num = 0
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg
