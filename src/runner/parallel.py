"""Torch CPU threads of a run: ``torch_threads`` if set, else one per job when a parallel launcher
(``hydra/launcher=joblib``) runs several jobs at once on CPU, so that they do not oversubscribe the cores."""

from __future__ import annotations

import logging

import torch
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def parallel_launcher_jobs() -> int | None:
    """``n_jobs`` of the Hydra launcher of this job when it runs jobs in parallel (None otherwise)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    launcher = HydraConfig.get().get("launcher") or {}
    n_jobs = launcher.get("n_jobs")
    return None if n_jobs in (None, 1) else int(n_jobs)


def runs_on_cpu(cfg: DictConfig) -> bool:
    accelerator = str(cfg.get("trainer", {}).get("accelerator", "cpu"))
    return accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())


def torch_threads_for(cfg: DictConfig) -> int | None:
    """The thread count to set (None: leave torch's default)."""
    if cfg.get("torch_threads") is not None:
        return int(cfg.torch_threads)
    if parallel_launcher_jobs() is not None and runs_on_cpu(cfg):
        return 1
    return None


def configure_torch_threads(cfg: DictConfig) -> int:
    """Apply :func:`torch_threads_for`; returns the threads torch uses now."""
    threads = torch_threads_for(cfg)
    if threads is not None and threads != torch.get_num_threads():
        torch.set_num_threads(threads)
        log.info("torch CPU threads: %d", threads)
    return torch.get_num_threads()


def trainer_adjustments(cfg: DictConfig) -> dict:
    """Trainer arguments that make a GPU-minded ``trainer=ddp`` work with ``trainer.accelerator=cpu``:
    SyncBatchNorm is GPU-only (each CPU process keeps its own BatchNorm statistics), and "every
    device" (``devices: -1``) means 2 processes on CPU (``trainer.devices=N`` for another count)."""
    node = cfg.get("trainer") or {}
    if not runs_on_cpu(cfg):
        return {}
    out = {}
    if node.get("sync_batchnorm"):
        out["sync_batchnorm"] = False
        log.info(
            "trainer.sync_batchnorm: SyncBatchNorm needs GPUs; on CPU each process keeps its own statistics"
        )
    if str(node.get("strategy", "")).startswith("ddp") and node.get("devices") in (-1, "-1", "auto"):
        out["devices"] = 2
        log.info(
            "trainer.devices=%s on CPU: DDP with 2 processes (set trainer.devices=N)", node.get("devices")
        )
    return out
