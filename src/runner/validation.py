"""Checks of user-set values before anything is built, so a bad override fails in one clear line.

Each rule names the config key, the value found and what is allowed (runner.errors.invalid_value).
Rules only apply to keys present in the composed config.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig, ListConfig, OmegaConf

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


# ---------------------------------------------------------------------------------------------------
# Numeric ranges (and a few closed choices) of every config group, checked on the composed config
# before anything is built or generated.
#
# HOW A CONFIG GROUP DECLARES ITS RANGES: add (or extend) its entry in ``RANGES`` below:
#
#     RANGES["skeleton"] = {                  # the top-level config key the group writes to
#         "num_joints": "int >= 1",           # a key of that group (dotted path below the group)
#         "graph.*.hops": "int >= 1",         # fnmatch patterns; a list's elements share its key
#         "dropout": "[0, 1)",
#         "layout": one_of("coco", "ntu"),    # or any Rule
#     }
#
# Spec strings: "int" / "number" (any), "int >= k", "number > x" (also >=, <, <=), and intervals
# "[a, b]", "(a, b)", "[a, b)", "(a, b]" (numbers). A null value is never checked (null = unset).
# Within a group the first matching pattern wins; keys no group pattern matches fall back to
# ``NAME_RANGES`` (by the key's last name, shared by every group). ``tests/test_validation.py``
# composes every experiment and fails for any numeric value no pattern covers — a new group's numbers
# must be declared here to pass it.
# ---------------------------------------------------------------------------------------------------

_SPEC = re.compile(r"^(int|number)?\s*(?:(>=|>|<=|<)\s*(-?[\d.e+-]+))?$")
_INTERVAL = re.compile(r"^([\[(])\s*(-?[\d.e+-]+)\s*,\s*(-?[\d.e+-]+)\s*([\])])$")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def spec_rule(spec: str | Rule) -> Rule:
    """A :class:`Rule` from a spec string (see the block comment above); a Rule is returned as is."""
    if isinstance(spec, Rule):
        return spec
    text = spec.strip()
    interval = _INTERVAL.match(text)
    if interval:
        left, lo, hi, right = (
            interval.group(1),
            float(interval.group(2)),
            float(interval.group(3)),
            interval.group(4),
        )

        def in_interval(v: Any) -> bool:
            if not _is_number(v):
                return False
            above = v >= lo if left == "[" else v > lo
            below = v <= hi if right == "]" else v < hi
            return above and below

        return Rule(in_interval, f"a number in {left}{interval.group(2)}, {interval.group(3)}{right}")
    match = _SPEC.match(text)
    if not match or not text:
        raise ValueError(f"bad range spec {spec!r}")
    kind, op, bound_text = match.group(1) or "number", match.group(2), match.group(3)
    typed = _is_int if kind == "int" else _is_number
    noun = "an integer" if kind == "int" else "a number"
    if op is None:
        return Rule(typed, noun)
    bound = float(bound_text)
    compare = {">=": bound.__le__, ">": bound.__lt__, "<=": bound.__ge__, "<": bound.__gt__}[op]
    return Rule(lambda v: typed(v) and compare(v), f"{noun} {op} {bound_text}")


def any_of(*rules: str | Rule) -> Rule:
    """Allowed when one of ``rules`` allows it (e.g. ``any_of("int >= 1", one_of(-1))``)."""
    built = [spec_rule(r) for r in rules]
    return Rule(lambda v: any(r.check(v) for r in built), " or ".join(r.allowed for r in built))


FRACTION = "[0, 1]"
PROBABILITY = "[0, 1)"  # dropout, momentum, label smoothing: 1 would be degenerate
COUNT = "int >= 1"
# kept in step with runner.federated.aggregators / attacks and the Byrd-NAFL strategy by a test
# (listed here so that validation needs no torch import: a typo fails in about 2 s)
AGGREGATOR_NAMES = (
    "mean",
    "weighted_mean",
    "median",
    "trimmed_mean",
    "krum",
    "multi_krum",
    "geometric_median",
    "centered_clipping",
    "bulyan",
)
PRE_AGGREGATOR_NAMES = ("nnm", "bucketing")
ATTACK_NAMES = ("none", "sign_flip", "gaussian", "zero_gradient", "alie", "ipm", "mimic", "label_flip")

RANGES: dict[str, dict[str, str | Rule]] = {
    "": {  # top-level keys
        "seed": "int",
        "torch_threads": COUNT,
    },
    "trainer": {
        "max_epochs": any_of("int >= 1", one_of(-1)),
        "min_epochs": "int >= 0",
        "max_steps": any_of("int >= 1", one_of(-1)),
        "min_steps": "int >= 0",
        "gradient_clip_val": "number >= 0",
        "accumulate_grad_batches": COUNT,
        "check_val_every_n_epoch": COUNT,
        "log_every_n_steps": COUNT,
        "devices": any_of("int >= 1", one_of(-1)),
        "num_nodes": COUNT,
        "num_sanity_val_steps": "int >= -1",
        "limit_*_batches": any_of("int >= 0", FRACTION),
        "overfit_batches": any_of("int >= 0", FRACTION),
        "val_check_interval": any_of("int >= 1", "(0, 1]"),
        "fast_dev_run": "int >= 0",
    },
    "callbacks": {
        "*.patience": "int >= 0",
        "*.min_delta": "number >= 0",
        "*.warmup_epochs": "int >= 0",
        "*.every_n_epochs": "int >= 0",
        "*.every_n_train_steps": "int >= 0",
        "*.save_top_k": "int >= -1",
        "*.check_every_n_steps": COUNT,
        "*.max_loss": "number > 0",
        "*.max_abs": "number > 0",
        # fl_backend=flower_* (runner.federated.flower)
        "fl_backend.client_cpus": "number > 0",
        "fl_backend.client_gpus": "number >= 0",
        "fl_backend.ray_cpus": "int >= 1",
        "fl_backend.round_timeout": "number > 0",
        "fl_backend.node_wait": "number > 0",
        "fl_backend.torch_threads": "int >= 1",
    },
    "dataset": {
        "reader.split": one_of(1, 2, 3),
        "reader.severities": "[1, 5]",
        "severities": "[1, 5]",
        "reader.test_fraction": "(0, 1)",
        "reader.train_fraction": "(0, 1]",
        "client_test_fraction": "[0, 1)",
        "val_fraction": "[0, 1)",
        "split": FRACTION,
        "flip_prob": FRACTION,
        "mean": "number",
        "std": "number > 0",
        "expected.*": "int >= 0",
        "expected_tolerance": "number >= 0",
        "rating_threshold": "number",
        "reader.positive_class": "int >= 0",
        "item_k_core": "int >= 0",
        "user_k_core": "int >= 0",
        "partition.alpha": "number > 0",
        "partition.imbalance_factor": "number >= 1",
        "partition.max_retries": COUNT,
        "partition.min_size": "int >= 0",
        "max_clips_per_subset": COUNT,
        "*seed": "int",
        "twin.affinity": "number >= 0",
        "twin.noise": "number >= 0",
        "twin.agree_rate": FRACTION,
        "twin.clean_fraction": FRACTION,
        "twin.popularity_exponent": "number >= 0",
        "twin.popularity_weight": "number >= 0",
        "twin.secondary_weight": "number >= 0",
        "twin.task_mix": "number >= 0",
        "twin.min_interactions": "int >= 0",
        "twin.class_priors": "number >= 0",  # sticker twins (MGHFT): class weights and signal probabilities
        "twin.p_*": FRACTION,
        "twin.caption_prob": FRACTION,
        # QVHighlights-Unify twin (OVG-HQ): probabilities, noise scales, clip length
        "twin.length_probs": FRACTION,
        "twin.*_prob": FRACTION,
        "twin.*_noise": "number >= 0",
        "twin.style_strength": "number >= 0",
        "twin.test_fraction": "(0, 1)",  # styled-object twins: share of each class in the test split
        "twin.contrast": "number > 0",  # semantic CIFAR twin: pattern amplitude and MDS sharpening power
        "twin.semantic_power": "number > 0",
        "twin.*colour_swap": FRACTION,  # CIFAR twins: share of images with a random class's colour
        "twin.image_g_distortion": "number >= 0",
        "twin.clip_seconds": "number > 0",
        "twin.*": COUNT,  # counts and sizes of the twins (clips, users, image size, fps, ...)
        "twin_geometry.*": COUNT,
        "views.*": COUNT,
        "short_side": COUNT,
        "num_frames": COUNT,
        "stride": COUNT,
        "crop_size": COUNT,
        "reader.size": COUNT,
        "rounds_per_epoch": COUNT,
        "num_clients": COUNT,
        "vocab_size": "int >= 8",
        # QVHighlights (OVG-HQ): clip length, causal window, anchor lengths (clips), label IoU
        "clip_seconds": "number > 0",
        "window": COUNT,
        "anchors": COUNT,
        "pos_iou": "(0, 1]",
        "chunk_stride": COUNT,
        # sticker datasets (MGHFT): MET-MEME's split, the frozen text encoder, the image augmentation
        "reader.split_fractions": FRACTION,  # MET-MEME: three shares summing to 1 (the reader checks the sum)
        "text_encoder.layers": COUNT,
        "transform.color_jitter": "number >= 0",
        "transform.eval_crop_ratio": "(0, 1]",
        "transform.hflip": FRACTION,
        "transform.scale": "(0, 1]",
    },
    "fl_strategy": {
        "aggregator": one_of(*AGGREGATOR_NAMES),
        "pre_aggregation": one_of(None, *PRE_AGGREGATOR_NAMES),
        "attack": one_of(*ATTACK_NAMES),
        "acceleration": one_of("none", "heavy_ball", "nesterov"),
        "momentum_at": one_of("server", "clients"),
        "byzantine_fraction": "[0, 0.5)",
        "server_lr": "number > 0",
        "alpha_lr": "number >= 0",  # 0 = a fixed alpha (APFL)
        "beta": PROBABILITY,
        "betas": PROBABILITY,
        "server_momentum": PROBABILITY,
        "eps": "number > 0",
        "budget": "(0, 1]",
        "mask_keep": FRACTION,
        "rate": FRACTION,
        "retrain_fraction": "(0, 1]",
        "lam_range": FRACTION,
        "lambda_range": FRACTION,
        "lam": FRACTION,
        "lambda_*": "number >= 0",
        "mu": "number >= 0",
        "alpha": "number >= 0",
        "clients_per_round": COUNT,
        "per_class": COUNT,
        "total_rounds": COUNT,
        "retrain_from_round": "int >= 0",
        "layer_idx": "int",
        "aggregator_options.geometric_median.max_iter": COUNT,
        "aggregator_options.geometric_median.tol": "number > 0",
        "aggregator_options.geometric_median.nu": "number > 0",
        "aggregator_options.centered_clipping.tau": "number > 0",
        "aggregator_options.centered_clipping.iters": COUNT,
        "aggregator_options.multi_krum.m": COUNT,
        "aggregator_options.trimmed_mean.*": "int >= 0",
        "pre_aggregation_options.bucketing.bucket_size": COUNT,
        "attack_options.sign_flip.scale": "number > 0",
        "attack_options.gaussian.sigma": "number >= 0",
        "attack_options.alie.z": "number",
        "attack_options.ipm.epsilon": "number >= 0",
        "attack_options.mimic.target": "int >= 0",
    },
    "fedpall": {"beta": "number >= 0", "mu": "number >= 0"},
    "method": {
        "execution": one_of("auto", "vectorized", "sequential"),
        "decoders.*.alpha": "number >= 0",
        "decoders.*.beta": FRACTION,
        "decoders.*.top_p": "(0, 1]",
        "distill.cache_views": COUNT,
        "distill.probe_clip": COUNT,
        "distill.scale": "number >= 0",
        "distill.terms.*.weight": "number >= 0",
        "distill.terms.kd.fusion.tau": "number > 0",
        "distill.terms.rkd.*_factor": "number >= 0",
        "distill.terms.*.temperature": "number > 0",
        # loss weights / exponents of the baselines' terms (DKD alpha, beta; DIST beta, gamma; OFA eps)
        "distill.terms.dkd.alpha": "number >= 0",
        "distill.terms.dkd.beta": "number >= 0",
        "distill.terms.dist.beta": "number >= 0",
        "distill.terms.dist.gamma": "number >= 0",
        "distill.terms.ofa.eps": "number > 0",
        "distill.terms.*": COUNT,  # projector / bottleneck widths
        "*.scheduler.gamma": "(0, 1]",
        "*.scheduler.milestones": "int >= 0",
        "*.scheduler.warmup_fraction": PROBABILITY,
        "scheduler.gamma": "(0, 1]",
        "scheduler.milestones": "int >= 0",
        "scheduler.warmup_fraction": PROBABILITY,
        "*.net.mlp_ratio": "number > 0",
        "*.net.tubelet": COUNT,
        "topks": COUNT,
        "max_new_tokens": COUNT,
        "negative_redraws": "int >= 0",
        # OVG-HQ: focal loss, emission threshold / NMS IoU, timeliness tolerances (s)
        "loss.focal_alpha": FRACTION,
        "loss.focal_gamma": "number >= 0",
        "emission.threshold": FRACTION,
        "emission.nms_iou": FRACTION,
        "tolerances": "number > 0",
        # MGHFT: the KL structure weight, fusion heads, AdamW betas
        "alpha": "number >= 0",
        "fusion_heads": COUNT,
        "optimizer.betas": PROBABILITY,
        # a teacher pretrained on another dataset first (dual-teacher twin: the ViT on Kinetics-400)
        "teachers.*.pretrain.data.mean": "number",
        "teachers.*.pretrain.data.std": "number > 0",
        "teachers.*.pretrain.data.stride": COUNT,
        "teachers.*.pretrain.data.short_side": COUNT,
        "teachers.*.pretrain.data.twin_geometry.*": COUNT,
    },
    "model": {
        "alpha": "number >= 0",
        "eps": "number >= 0",
        "cl_rate": "number >= 0",
        "layer_cl": "int >= 0",
        "channels": COUNT,
        "widths": COUNT,
        "extractor.*": COUNT,
        "groups": COUNT,
        "kmeans_iterations": COUNT,
        "hyper_layers": COUNT,
        "memory_blocks": "int >= 0",  # OVG-HQ Parametric Memory Blocks
        "null_tokens": "int >= 0",  # OVG-HQ learned null query tokens
        "depths": COUNT,  # PVT v1 (MGHFT): blocks, MLP ratios and spatial-reduction ratios per stage
        "mlp_ratios": "number > 0",
        "sr_ratios": COUNT,
    },
}

# by the key's last name, in every group (after the group's own patterns); first match wins
NAME_RANGES: dict[str, str | Rule] = {
    "seed": "int",
    "*_seed": "int",
    "alpha_lr": "number >= 0",
    "lr": "number > 0",
    "*_lr": "number > 0",
    "weight_decay": "number >= 0",
    "*_weight_decay": "number >= 0",
    "momentum": PROBABILITY,
    "*_momentum": PROBABILITY,
    "dropout": PROBABILITY,
    "*dropout": PROBABILITY,
    "drop_ratio": PROBABILITY,
    "label_smoothing": PROBABILITY,
    "temperature": "number > 0",
    "*_temperature": "number > 0",
    "tau": "number > 0",
    "*_tau": "number > 0",
    "*_temp": "number > 0",
    "num_workers": "int >= 0",
    "gradient_clip_val": "number >= 0",
    "warmup_epochs": "int >= 0",
    "warm_up_epochs": "int >= 0",
    "*epochs": COUNT,
    "max_steps": any_of("int >= 1", one_of(-1)),
    "*steps": COUNT,
    "*_iter": COUNT,
    "*_iters": COUNT,
    "*_factor": "number > 0",
    "*_fraction": FRACTION,
    "*_rate": FRACTION,
    "*_prob": FRACTION,
    "*_weight": "number >= 0",
    "weight": "number >= 0",
    "*_reg": "number >= 0",
    "*batch_size": COUNT,
    "*batch_users": COUNT,
    "num_*": COUNT,
    "n_*": COUNT,
    "*_size": COUNT,
    "size": COUNT,
    "*_dim": COUNT,
    "dim": COUNT,
    "*_dims": COUNT,
    "depth": COUNT,
    "heads": COUNT,
    "*hidden": COUNT,
    "hidden*": COUNT,
    "*_width": COUNT,
    "*_layers": COUNT,
    "vocab_size": "int >= 8",
    "crop_size": COUNT,
    "num_frames": COUNT,
    "*_per_*": COUNT,
    "max_*": "number > 0",
    "min_*": "number >= 0",
    "*_k_core": "int >= 0",
    "*_fps": COUNT,
    "fps": COUNT,
}


def declare_ranges(group: str, rules: dict[str, str | Rule]) -> None:
    """Add range rules for ``group`` at run time (a plugin's package may call this)."""
    RANGES.setdefault(group, {}).update(rules)


def _strip_indices(path: str) -> str:
    return re.sub(r"\[\d+\]", "", path)


def range_rule(path: str) -> Rule | None:
    """The rule covering the dotted config ``path`` (list indices allowed), or None."""
    bare = _strip_indices(path)
    group, _, rest = bare.partition(".")
    if not rest:
        group, rest = "", bare
    for pattern, spec in RANGES.get(group, {}).items():
        if fnmatch.fnmatchcase(rest, pattern):
            return spec_rule(spec)
    name = bare.rsplit(".", 1)[-1]
    for pattern, spec in NAME_RANGES.items():
        if fnmatch.fnmatchcase(name, pattern):
            return spec_rule(spec)
    return None


# leaves never range-checked: hydra internals, paths, instantiation keys
_SKIPPED_TOP = {"hydra", "paths"}


def _walk_sources(raw: Any, resolved: Any, prefix: str) -> Iterator[tuple[str, Any]]:
    """Like :func:`_walk` over ``resolved``, skipping subtrees that ``raw`` (the same node unresolved)
    copies from another key (``strategy: ${fl_strategy}``): those are checked at their source."""
    if isinstance(raw, str) and _NODE_INTERPOLATION.match(raw):
        return
    if isinstance(resolved, dict):
        for key, value in resolved.items():
            sub = raw.get(key) if isinstance(raw, dict) else None
            yield from _walk_sources(sub, value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(resolved, list):
        for i, value in enumerate(resolved):
            sub = raw[i] if isinstance(raw, list) and i < len(raw) else None
            yield from _walk_sources(sub, value, f"{prefix}[{i}]")
    else:
        yield prefix, resolved


_NODE_INTERPOLATION = re.compile(r"^\$\{[\w.]+\}$")


def config_leaves(cfg: DictConfig) -> Iterator[tuple[str, Any]]:
    """(dotted path, value) of every leaf of the resolved config (an unresolvable interpolation is a
    UserError naming its key); a node that only copies another key is left to that key."""
    from omegaconf.errors import OmegaConfBaseException

    for key in cfg:
        if key in _SKIPPED_TOP:
            continue
        node = cfg._get_node(key)
        try:
            if isinstance(node, DictConfig | ListConfig):
                raw = OmegaConf.to_container(node, resolve=False, throw_on_missing=False)
                value = OmegaConf.to_container(node, resolve=True, throw_on_missing=False)
            else:
                raw = node._value() if node is not None else None
                value = OmegaConf.select(cfg, str(key), throw_on_missing=False)
        except OmegaConfBaseException as err:
            raise UserError(f"config key {key}: {str(err).splitlines()[0]}") from err
        yield from _walk_sources(raw, value, str(key))


def check_ranges(cfg: DictConfig) -> None:
    """Raise UserError for the first numeric (or closed-choice) value outside its declared range."""
    for path, value in config_leaves(cfg):
        if value is None or path.rsplit(".", 1)[-1].startswith("_"):
            continue
        rule = range_rule(path)
        if rule is None:
            continue
        # ranges are for numbers (a string such as "auto" is another kind of value); closed choices
        # (one_of) apply to any value
        if not rule.allowed.startswith("one of") and not _is_number(value):
            continue
        if not rule.check(value):
            raise invalid_value(path, value, rule.allowed)


def validate_config(cfg: DictConfig) -> None:
    """Raise UserError for the first value no rule allows; also catch a GPU asked for on a CPU-only box."""
    for key, rule in KEY_RULES.items():
        if OmegaConf.select(cfg, key, default="__absent__") == "__absent__":
            continue
        value = OmegaConf.select(cfg, key)
        if value is not None and not rule.check(value):  # null = unset (the group's default applies)
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
    check_ranges(cfg)
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
