"""Atomic checkpoint writes and the lookup behind ``resume=auto``."""

from __future__ import annotations

import glob
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes a checkpoint to a temporary file in the target folder, then renames it into place.

    A crash or a kill during the write leaves the previous checkpoint intact: readers only ever
    see a complete file (``os.replace`` is atomic on POSIX within one file system).
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO does not take storage_options")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp_name, target)
        except BaseException:
            if os.path.exists(tmp_name):
                os.unlink(tmp_name)
            raise


def find_resume_checkpoint(output_dir: str, log_dir: str, task_name: str) -> str | None:
    """The checkpoint ``resume=auto`` continues from.

    The run directory's own ``checkpoints/last.ckpt`` if it exists (a fixed ``hydra.run.dir``),
    else the most recently written ``last.ckpt`` among this task's earlier runs
    (``<log_dir>/<task_name>/runs/*/checkpoints/last.ckpt``); None when there is none.
    """
    own = Path(output_dir) / "checkpoints" / "last.ckpt"
    if own.is_file():
        return str(own)
    pattern = os.path.join(log_dir, task_name, "runs", "*", "checkpoints", "last.ckpt")
    candidates = [p for p in glob.glob(pattern) if os.path.isfile(p)]
    if not candidates:
        return None
    return max(candidates, key=os.path.getmtime)


def read_callback_state(ckpt_path: str, key_fragment: str) -> dict[str, Any]:
    """The saved state of the callback whose state key contains ``key_fragment`` ({} if absent)."""
    checkpoint = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    for key, state in checkpoint.get("callbacks", {}).items():
        if key_fragment in key:
            return dict(state)
    return {}
