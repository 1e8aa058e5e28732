"""One nested training per distributed job: rank 0 trains, the other ranks wait for its file.

Under DDP (``trainer=ddp``, ``ddp_sim``, ``ddp_multinode``, torchrun or SLURM) every rank runs the
LightningModule's ``setup``, where a distillation run trains its missing teachers (and the
student-alone reference) with a nested Trainer. Training them on every rank wastes the job, and
training them on rank 0 *inside* the process group deadlocks: the nested Trainer's metrics and
Lightning itself see the initialised default group and all-reduce on it while the other ranks wait
elsewhere. So (:func:`train_once`):

* rank 0 trains with the process group hidden (:func:`outside_process_group`: no distributed
  environment variables, ``torch.distributed.is_initialized()`` false), so its nested Trainer is a
  plain single-process one, and writes the checkpoint atomically;
* the other ranks poll for that file (no collective call, so no collective timeout while rank 0
  trains); if rank 0 fails it leaves ``<file>.failed`` with the error and they stop with it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import torch

__all__ = ["job_rank", "outside_process_group", "train_once"]

# what torchrun, Lightning's launchers and SLURM tell a process about the job
_ENV_PREFIXES = ("SLURM_", "TORCHELASTIC_", "PMI_", "OMPI_")
_ENV_NAMES = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "LOCAL_WORLD_SIZE",
    "GROUP_RANK",
    "GROUP_WORLD_SIZE",
    "ROLE_RANK",
    "ROLE_WORLD_SIZE",
    "NODE_RANK",
    "MASTER_ADDR",
    "MASTER_PORT",
)
WAIT_TIMEOUT_ENV = "RUNNER_NESTED_WAIT_S"  # how long other ranks wait for rank 0 (default 24 h)


def job_rank() -> tuple[int, int]:
    """``(rank, world size)`` of this process: the default process group's, else the launcher's
    environment (torchrun ``RANK`` / ``WORLD_SIZE``, SLURM ``SLURM_PROCID`` / ``SLURM_NTASKS``),
    else ``(0, 1)``."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    for rank, world in (("RANK", "WORLD_SIZE"), ("SLURM_PROCID", "SLURM_NTASKS")):
        if rank in os.environ and world in os.environ:
            return int(os.environ[rank]), int(os.environ[world])
    return 0, 1


@contextlib.contextmanager
def outside_process_group() -> Iterator[None]:
    """Inside the block this process looks like a single-process job to Lightning and torchmetrics:
    the launcher's environment variables are removed and ``torch.distributed.is_initialized()`` is
    false (restored on exit). For a training that one rank runs alone."""
    saved = {k: v for k, v in os.environ.items() if k in _ENV_NAMES or k.startswith(_ENV_PREFIXES)}
    for key in saved:
        del os.environ[key]
    try:
        with mock.patch.object(torch.distributed, "is_initialized", return_value=False):
            yield
    finally:
        os.environ.update(saved)


def _failure_file(path: Path) -> Path:
    return path.with_name(path.name + ".failed")


def wait_for(path: Path, what: str, timeout: float | None = None, poll: float = 2.0) -> None:
    """Block until ``path`` exists (rank 0 wrote it) or rank 0 reported a failure."""
    limit = float(os.environ.get(WAIT_TIMEOUT_ENV, 86_400)) if timeout is None else timeout
    deadline = time.monotonic() + limit
    failed = _failure_file(path)
    while not path.is_file():
        if failed.is_file():
            raise RuntimeError(f"{what}: rank 0 failed to train it: {failed.read_text().strip()}")
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"{what}: waited {limit:.0f} s for rank 0 to write {path} ({WAIT_TIMEOUT_ENV})"
            )
        time.sleep(poll)


@contextlib.contextmanager
def train_once(path: str | os.PathLike, what: str) -> Iterator[bool]:
    """``with train_once(file, name) as train: if train: <train and write file>``.

    Single process: ``train`` is True and nothing else changes. In a distributed job: True on rank 0,
    which then trains outside the process group; on the other ranks False, after ``file`` appeared."""
    path = Path(path)
    rank, world = job_rank()
    if world == 1:
        yield True
        return
    if rank != 0:
        wait_for(path, what)
        yield False
        return
    failed = _failure_file(path)
    failed.unlink(missing_ok=True)
    try:
        with outside_process_group():
            yield True
    except BaseException as err:
        path.parent.mkdir(parents=True, exist_ok=True)
        failed.write_text(f"{type(err).__name__}: {err}\n")
        raise
