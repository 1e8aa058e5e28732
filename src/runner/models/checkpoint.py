"""Loading local weight files into the runner's models.

Only local files are read (this project runs offline): ``torch.load(path, map_location="cpu",
weights_only=True)``. The file may hold a raw ``state_dict`` or a dict that wraps one under
``"state_dict"`` (Lightning) or ``"model"`` (many research repos). Common wrapper prefixes
(``module.`` from DDP, ``model.``/``net.`` from Lightning modules, ``_orig_mod.`` from
``torch.compile``) are stripped: every combination of up to three such prefixes is tried and
the one whose names best match the module is kept.

A module may translate foreign key names (e.g. an original torchvision or timm checkpoint)
into its own by defining ``_checkpoint_key_map(state_dict) -> state_dict``, and names its
classifier with ``_head_prefixes`` (default ``("classifier.",)``). Classifier tensors whose
shape differs from the module's (a different number of classes) are skipped unless
``strict_head=True``; a shape mismatch anywhere else is an error.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from runner.errors import UserError

log = logging.getLogger(__name__)

STRIP_PREFIXES = ("module.", "model.", "net.", "_orig_mod.", "student.")
_WRAPPER_KEYS = ("state_dict", "model", "model_state", "net")
_MAX_STRIP_DEPTH = 3


def _unwrap(obj: object, path: str) -> dict[str, torch.Tensor]:
    """Find the state_dict inside a loaded checkpoint object."""
    for _ in range(4):
        if not isinstance(obj, Mapping):
            break
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise UserError(
            f"checkpoint {path} holds a {type(obj).__name__}, not a state_dict (model.checkpoint)"
        )
    sd = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise UserError(f"checkpoint {path} holds no tensors (model.checkpoint)")
    return sd


def _candidates(sd: dict[str, torch.Tensor]):
    """Yield ``sd`` and versions with up to ``_MAX_STRIP_DEPTH`` known prefixes stripped."""
    yield sd
    frontier = [sd]
    for _ in range(_MAX_STRIP_DEPTH):
        nxt = []
        for cur in frontier:
            for p in STRIP_PREFIXES:
                sub = {k[len(p) :]: v for k, v in cur.items() if k.startswith(p)}
                if sub:
                    nxt.append(sub)
                    yield sub
        frontier = nxt


def load_local_weights(module: nn.Module, path: str | Path, strict_head: bool = False) -> None:
    """Load the local weight file ``path`` into ``module`` (in place).

    Args:
        module: the model; its ``_checkpoint_key_map`` and ``_head_prefixes`` are honoured.
        path: a local file (``model.checkpoint``).
        strict_head: if True, a classifier whose shape differs raises instead of being skipped.

    Raises:
        UserError: the file does not exist or cannot be read, shares no parameter names with
            the model, or a non-classifier tensor has the wrong shape.
    """
    p = Path(str(path)).expanduser()
    if not p.is_file():
        raise UserError(
            f"checkpoint file not found: {path}; set model.checkpoint to an existing local file or null"
        )
    try:
        obj = torch.load(str(p), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is the user's file
        raise UserError(f"cannot read checkpoint {path} (model.checkpoint): {type(e).__name__}: {e}") from e
    raw = _unwrap(obj, str(path))

    own = module.state_dict()
    key_map = getattr(module, "_checkpoint_key_map", None)
    best: dict[str, torch.Tensor] = {}
    best_score = (0, 0)
    for cand in _candidates(raw):
        mapped = key_map(dict(cand)) if key_map is not None else cand
        names = [k for k in mapped if k in own]
        score = (len(names), sum(mapped[k].shape == own[k].shape for k in names))
        if score > best_score:
            best, best_score = mapped, score
    if best_score[0] == 0:
        sample = ", ".join(list(raw)[:3])
        raise UserError(
            f"checkpoint {path} shares no parameter names with {type(module).__name__} "
            f"(first keys: {sample}); check model.checkpoint"
        )

    head_prefixes = tuple(getattr(module, "_head_prefixes", ("classifier.",)))
    to_load: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    for k, v in best.items():
        if k not in own:
            continue
        if v.shape != own[k].shape:
            if k.startswith(head_prefixes) and not strict_head:
                skipped.append(f"{k} {tuple(v.shape)}->{tuple(own[k].shape)}")
                continue
            raise UserError(
                f"checkpoint {path}: {k} has shape {tuple(v.shape)} but the model expects "
                f"{tuple(own[k].shape)}; the file does not match this model (model.checkpoint)"
            )
        to_load[k] = v
    module.load_state_dict(to_load, strict=False)
    missing = [k for k in own if k not in to_load]
    unexpected = [k for k in best if k not in own]
    log.info("loaded %d/%d tensors from %s", len(to_load), len(own), path)
    if skipped:
        log.warning("skipped classifier tensors with a different shape: %s", ", ".join(skipped))
    if missing:
        log.warning("%d model tensors not in checkpoint (kept at init): %s", len(missing), _short(missing))
    if unexpected:
        log.warning("%d checkpoint tensors unused: %s", len(unexpected), _short(unexpected))


def _short(keys: list[str], n: int = 8) -> str:
    return ", ".join(keys[:n]) + (f", ... (+{len(keys) - n})" if len(keys) > n else "")
