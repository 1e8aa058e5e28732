"""Atomic checkpoint writes, safe checkpoint reads, and the lookup behind ``resume=auto``.

Every checkpoint is read with ``torch.load(weights_only=True)`` (:func:`load_checkpoint`): a crafted
file cannot run code, and a corrupt, truncated or foreign file becomes one :class:`UserError` line
naming it. ``resume=auto`` skips a bad checkpoint and falls back to the previous good one, saying so.
Temporary files that a killed write left behind (``.<name>.<pid>.*.tmp``) are removed.
"""

from __future__ import annotations

import glob
import logging
import os
import pickle
import re
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from runner.errors import UserError

log = logging.getLogger(__name__)

# keys every Lightning training checkpoint has (what ckpt_path= / resume=auto need to continue)
RESUME_KEYS = ("state_dict", "loops", "optimizer_states", "epoch", "global_step")
_TMP_PID = re.compile(r"^\..+\.(\d+)\.[^.]*\.tmp$")


# Types admitted by the safe load besides tensors and plain containers. Lightning's own checkpoints
# need none: it stores hyper-parameters as a plain dict (an OmegaConf container only when the module's
# hparams are one — this runner's modules save plain values), loop / callback / optimizer states as
# dicts of tensors and numbers. Append a type here only if a checkpoint of this runner needs it.
SAFE_CHECKPOINT_GLOBALS: list[Any] = []


def safe_checkpoint_globals() -> list[Any]:
    """The non-tensor types a checkpoint of this runner may hold (see SAFE_CHECKPOINT_GLOBALS)."""
    return list(SAFE_CHECKPOINT_GLOBALS)


def load_checkpoint(path: str | os.PathLike, require: tuple[str, ...] = ()) -> dict[str, Any]:
    """A checkpoint file read with ``weights_only=True`` (nothing in it can run code).

    Raises :class:`UserError` naming the file when it is missing, empty, truncated, garbled, not a
    torch checkpoint, holds objects a safe load does not admit (a crafted pickle), or lacks one of
    the ``require`` keys (a foreign file, e.g. plain weights given as a training checkpoint).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise UserError(f"checkpoint {path} is empty (0 bytes): an interrupted copy? give another file")
    try:
        with torch.serialization.safe_globals(safe_checkpoint_globals()):
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        unsafe = re.search(r"GLOBAL ([\w.]+)", str(err))
        if unsafe:
            raise UserError(
                f"checkpoint {path} holds {unsafe.group(1)}, which a safe load does not admit (only "
                "tensors and plain values are read: a file that needs other objects could run code)"
            ) from err
        if "Unsupported operand" in str(err) or "invalid load key" in str(err):
            raise UserError(
                f"checkpoint {path} is not a torch checkpoint (garbled, or another file format)"
            ) from err
        detail = str(err).split("WeightsUnpickler error:")[-1].strip().splitlines()[0][:160]
        raise UserError(f"checkpoint {path} holds objects a safe load does not admit ({detail})") from err
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, KeyError, IndexError) as err:
        reason = str(err).split("\n")[0][:160]
        raise UserError(
            f"checkpoint {path} is corrupt or truncated ({type(err).__name__}: {reason})"
        ) from err
    if not isinstance(checkpoint, dict):
        raise UserError(f"checkpoint {path} holds a {type(checkpoint).__name__}, not a checkpoint dict")
    missing = [key for key in require if key not in checkpoint]
    if missing:
        raise UserError(
            f"checkpoint {path} is not a training checkpoint of this runner (no {', '.join(missing)}); "
            "give a <run>/checkpoints/*.ckpt file"
        )
    return checkpoint


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_tmp_files(folder: str | os.PathLike) -> list[Path]:
    """Remove ``.*.tmp`` files an interrupted checkpoint write left in ``folder``; return them.

    A file whose name carries the id of a live process (a write in progress) is kept."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for tmp in folder.glob(".*.tmp"):
        match = _TMP_PID.match(tmp.name)
        if match and int(match.group(1)) != os.getpid() and _pid_alive(int(match.group(1))):
            continue
        try:
            tmp.unlink()
            removed.append(tmp)
        except OSError:
            continue
    if removed:
        log.info("removed %d stale temporary checkpoint file(s) in %s", len(removed), folder)
    return removed


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
        # the writer's pid in the name: clean_stale_tmp_files keeps the files of live writers
        fd, tmp_name = tempfile.mkstemp(
            prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent
        )
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


def resume_candidates(output_dir: str, log_dir: str, task_name: str) -> list[str]:
    """Checkpoints ``resume=auto`` may continue from, best first.

    The run directory's own checkpoints (a fixed ``hydra.run.dir``; ``last.ckpt`` first, then the
    others, newest first), then the ``last.ckpt`` of this task's earlier runs
    (``<log_dir>/<task_name>/runs/*/checkpoints/last.ckpt``), newest first.
    """
    own_dir = Path(output_dir) / "checkpoints"
    own = sorted(own_dir.glob("*.ckpt"), key=lambda p: (p.name != "last.ckpt", -p.stat().st_mtime))
    pattern = os.path.join(log_dir, task_name, "runs", "*", "checkpoints", "last.ckpt")
    earlier = sorted(
        (p for p in glob.glob(pattern) if os.path.isfile(p) and Path(p).parent != own_dir),
        key=os.path.getmtime,
        reverse=True,
    )
    return [str(p) for p in own] + earlier


def find_resume_checkpoint(output_dir: str, log_dir: str, task_name: str) -> str | None:
    """The checkpoint ``resume=auto`` continues from: the first of :func:`resume_candidates` that
    loads as a training checkpoint (None when there is none). A corrupt or foreign one is skipped
    with a warning naming it and the checkpoint used instead; stale ``.tmp`` files are removed."""
    skipped: list[str] = []
    for candidate in resume_candidates(output_dir, log_dir, task_name):
        clean_stale_tmp_files(Path(candidate).parent)
        try:
            load_checkpoint(candidate, require=RESUME_KEYS)
        except UserError as err:
            log.warning("resume=auto: skipping %s", err)
            skipped.append(candidate)
            continue
        if skipped:
            log.warning(
                "resume=auto: falling back to the previous good checkpoint %s (skipped %d bad: %s)",
                candidate,
                len(skipped),
                ", ".join(skipped),
            )
        return candidate
    if skipped:
        raise UserError(
            f"resume=auto found only unreadable checkpoints ({', '.join(skipped)}); "
            "remove them or start fresh without resume=auto"
        )
    return None


def _plain(value: Any) -> Any:
    """``value`` with every OmegaConf container (at any depth) turned into plain dicts / lists."""
    from omegaconf import OmegaConf

    if OmegaConf.is_config(value):
        return OmegaConf.to_container(value, resolve=True)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_plain(v) for v in value)
    return value


def make_hparams_plain(*objects: Any) -> None:
    """The saved hyperparameters (``save_hyperparameters``) of Lightning modules / datamodules, made
    plain in place, so every checkpoint they write loads with ``weights_only=True``: a run's objects
    are built from config and receive OmegaConf containers (``runner.train`` calls this once they are
    built; resume and ``test_ckpt=best`` reload the file)."""
    for obj in objects:
        hparams = getattr(obj, "hparams", None) if obj is not None else None
        if isinstance(hparams, dict):
            for key, value in list(hparams.items()):
                hparams[key] = _plain(value)


def callback_state(checkpoint: dict[str, Any], key_fragment: str) -> dict[str, Any]:
    """The saved state of the callback whose state key contains ``key_fragment`` ({} if absent)."""
    for key, state in (checkpoint.get("callbacks") or {}).items():
        if key_fragment in key and isinstance(state, dict):
            return dict(state)
    return {}


def read_callback_state(ckpt_path: str, key_fragment: str) -> dict[str, Any]:
    """The saved state of the callback whose state key contains ``key_fragment`` ({} if absent)."""
    return callback_state(load_checkpoint(ckpt_path), key_fragment)
