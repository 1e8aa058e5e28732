"""Checks of user-set values before anything is built, so a bad override fails in one clear line.

Each rule names the config key, the value found and what is allowed (runner.errors.invalid_value).
Rules only apply to keys present in the composed config.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from runner.errors import UserError, invalid_value

PRECISIONS = (
    "32-true",
    "32",
    32,
    "16-mixed",
    "bf16-mixed",
    "bf16-true",
    "16-true",
    "64-true",
    "64",
    64,
    "transformer-engine",
)
ACCELERATORS = ("cpu", "gpu", "cuda", "mps", "tpu", "auto")


@dataclass(frozen=True)
class Rule:
    """``check(value)`` is True when the value is allowed; ``allowed`` says what is."""

    check: Callable[[Any], bool]
    allowed: str


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def one_of(*options: Any) -> Rule:
    return Rule(lambda v: v in options, "one of " + ", ".join(map(str, options)))


POSITIVE = Rule(lambda v: _is_number(v) and v > 0, "a number > 0")
NON_NEGATIVE = Rule(lambda v: _is_number(v) and v >= 0, "a number >= 0")
POSITIVE_INT = Rule(lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1, "an integer >= 1")
NON_NEGATIVE_INT = Rule(
    lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0, "an integer >= 0"
)
UNIT_INTERVAL = Rule(lambda v: _is_number(v) and 0 <= v < 1, "a number in [0, 1)")
EPOCHS = Rule(
    lambda v: v is None or (isinstance(v, int) and (v >= 1 or v == -1)),
    "an integer >= 1 (or -1 for no limit)",
)

# rules for exact keys
KEY_RULES: dict[str, Rule] = {
    "seed": Rule(lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "resume": one_of(None, "auto"),
    "test_ckpt": one_of("last", "best"),
    "optimized_mode": one_of("max", "min"),
    "torch_threads": Rule(
        lambda v: v is None or (isinstance(v, int) and not isinstance(v, bool) and v >= 1),
        "an integer >= 1 or null",
    ),
    "trainer.max_epochs": EPOCHS,
    "trainer.precision": one_of(*PRECISIONS),
    "trainer.accelerator": one_of(*ACCELERATORS),
    "trainer.gradient_clip_val": Rule(
        lambda v: v is None or (_is_number(v) and v >= 0), "a number >= 0 or null"
    ),
    "dataset.batch_size": POSITIVE_INT,
    "dataset.num_workers": NON_NEGATIVE_INT,
    "dataset.num_frames": POSITIVE_INT,
    "dataset.stride": POSITIVE_INT,
    "dataset.crop_size": POSITIVE_INT,
    "dataset.sampling": one_of("dense", "uniform"),
    "dataset.reader.split": one_of(1, 2, 3),
    "dataset.reader.target": one_of("verb", "noun", "action"),
    "model.variant": one_of("xs", "s", "m"),
    "model.temporal": one_of("avg", "tsm"),
    "model.arch": one_of("r3d_18", "r2plus1d_18", "mc3_18", "s3d", "mvit_v2_s", "swin3d_t"),
}

# rules for a key name wherever it appears under these top-level groups
NAME_RULES: dict[str, Rule] = {
    "lr": POSITIVE,
    "weight_decay": NON_NEGATIVE,
    "momentum": UNIT_INTERVAL,
    "label_smoothing": UNIT_INTERVAL,
}
NAME_RULE_GROUPS = ("method", "model", "teacher", "student", "fl_strategy")


def _walk(node: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """(dotted key, leaf value) for every leaf of a plain nested dict/list."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, f"{prefix}[{i}]")
    else:
        yield prefix, node


def validate_config(cfg: DictConfig) -> None:
    """Raise UserError for the first value no rule allows; also catch a GPU asked for on a CPU-only box."""
    for key, rule in KEY_RULES.items():
        if OmegaConf.select(cfg, key, default="__absent__") == "__absent__":
            continue
        value = OmegaConf.select(cfg, key)
        if not rule.check(value):
            raise invalid_value(key, value, rule.allowed)
    for group in NAME_RULE_GROUPS:
        node = cfg.get(group)
        if node is None:
            continue
        plain = (
            OmegaConf.to_container(node, resolve=True, throw_on_missing=False)
            if isinstance(node, DictConfig)
            else node
        )
        for key, value in _walk(plain, group):
            rule = NAME_RULES.get(key.rsplit(".", 1)[-1])
            if rule is not None and value is not None and not rule.check(value):
                raise invalid_value(key, value, rule.allowed)
    accelerator = OmegaConf.select(cfg, "trainer.accelerator")
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        strategy = str(OmegaConf.select(cfg, "trainer.strategy", default="") or "")
        instead = (
            "trainer=ddp_sim (DDP with 2 CPU processes) or trainer=ddp trainer.accelerator=cpu"
            if strategy.startswith("ddp")
            else "trainer=cpu"
        )
        raise UserError(
            f"trainer.accelerator={accelerator} needs a CUDA GPU and none is visible; "
            f"use {instead} (or run on a machine with a GPU)"
        )
    check_precision_on_device(cfg, accelerator)


# fp16 autocast: CUDA only (on CPU Lightning switches it to bf16-mixed with a warning)
FP16_PRECISIONS = ("16-mixed", "16", 16)


def check_precision_on_device(cfg: DictConfig, accelerator: Any) -> None:
    """fp16 precision on a CPU run fails here: Lightning would silently switch ``16-mixed`` to bf16."""
    precision = OmegaConf.select(cfg, "trainer.precision")
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if precision in FP16_PRECISIONS and on_cpu:
        raise UserError(
            f"trainer.precision={precision} is fp16, which needs a CUDA GPU (on CPU Lightning would run "
            "bf16 instead); use trainer.precision=bf16-mixed or 32-true on CPU, or trainer=gpu"
        )
