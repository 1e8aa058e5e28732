"""open_clip models from local weight files only (nothing is downloaded): one loader for every CLIP
user here -- FedSM's class-name text tower (:class:`runner.models.text.OpenCLIPTextEncoder`) and a
CLIP image baseline (e.g. MGHFT's linear probe).

``load_open_clip(model_name, checkpoint, config_key=...)`` builds the architecture with
``pretrained=None`` and, when ``checkpoint`` is given, loads that local file through open_clip's own
loader (``weights_only=True``: tensors only, no code from the file; ``.safetensors``, a ``state_dict``
wrapper and a ``module.`` prefix are handled). ``checkpoint=None`` is an error naming ``config_key``
unless the caller allows a randomly initialised model (tests, a random-feature baseline).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from torch import nn

from runner.errors import UserError

log = logging.getLogger(__name__)


def check_model_name(model_name: str, config_key: str) -> None:
    """UserError naming ``config_key`` when open_clip has no architecture ``model_name``."""
    import open_clip

    names = open_clip.list_models()
    if model_name not in names:
        hint = ", ".join(n for n in names if n.startswith(("ViT-B", "ViT-L", "RN50")))[:300]
        raise UserError(f"unknown open_clip model {config_key}={model_name!r}; for example: {hint}")


def load_open_clip(
    model_name: str,
    checkpoint: str | Path | None,
    *,
    config_key: str,
    model_key: str | None = None,
    allow_random_init: bool = False,
    device: str = "cpu",
    **create_kwargs: Any,
) -> nn.Module:
    """An open_clip model (``CLIP`` / ``CustomTextCLIP``) in eval mode with the weights of the local
    file ``checkpoint``.

    Args:
        model_name: open_clip architecture (``ViT-B-32``, ...).
        checkpoint: a local weight file, or None (random weights; only with ``allow_random_init``).
        config_key: the config key of ``checkpoint``, named in errors
            (``fl_strategy.text_encoder.checkpoint``, ``method.clip_checkpoint``).
        model_key: the config key of ``model_name`` (default: ``config_key`` with ``model_name``).
        allow_random_init: accept ``checkpoint=None`` (a warning is logged).
        device: where the model goes.
        **create_kwargs: passed to ``open_clip.create_model`` (e.g. ``force_image_size``).
    """
    import open_clip

    model_key = model_key or config_key.rsplit(".", 1)[0] + ".model_name"
    check_model_name(model_name, model_key)
    if checkpoint is None:
        if not allow_random_init:
            raise UserError(
                f"{config_key} is not set: give a local open_clip weight file (nothing is downloaded)"
            )
        log.warning("open_clip %s without a checkpoint: randomly initialised weights", model_name)
        model = open_clip.create_model(model_name, pretrained=None, device=device, **create_kwargs)
        return model.eval()
    path = Path(str(checkpoint)).expanduser()
    if not path.is_file():
        raise UserError(
            f"open_clip checkpoint {path} not found ({config_key} must be a local file; nothing is downloaded)"
        )
    try:
        model = open_clip.create_model(
            model_name, pretrained=str(path), device=device, weights_only=True, **create_kwargs
        )
    except (RuntimeError, KeyError, ValueError, AssertionError) as err:  # wrong architecture / not weights
        first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        raise UserError(
            f"open_clip checkpoint {path} ({config_key}) does not load into {model_key}={model_name}: {first}"
        ) from err
    return model.eval()


def open_clip_tokenizer(model_name: str):
    """open_clip's tokenizer of ``model_name`` (the bundled BPE vocabulary for CLIP models: offline)."""
    import open_clip

    return open_clip.get_tokenizer(model_name)
