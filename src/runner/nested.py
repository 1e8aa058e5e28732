"""Nested trainings inside a run: a teacher, the student-alone reference, the fawning LM, an expert.

How a nested training learns about the debug mode. ``runner.train.run`` records, for the duration
of the run, the *debug limits* of the outer Trainer config (:func:`outer_run`): ``fast_dev_run``,
``limit_{train,val,test}_batches`` and ``overfit_batches`` when a debug mode set them, and, when
batches are limited, ``max_epochs`` as a cap. Every nested Lightning Trainer is built by
:func:`nested_trainer`, which lays these limits over the nested recipe. So ``debug=fdr`` makes every
nested training one batch and ``debug=limit`` a few batches of a few epochs, and no nested config has
to know the debug modes exist. :func:`debug_limits` is also part of each nested training's cache key
(only when it is not empty, so normal runs keep their keys): a one-batch teacher is never reused by
a full run.

Divergence. Every nested Trainer carries the runner's :class:`~runner.callbacks.NonFiniteLossGuard`
with the stage's name and the config key of its learning rate (``lower_key``): a NaN / inf or
exploding loss (or parameters) in a teacher, the student-alone reference or the fawning LM stops the
whole run with the same one line as the outer training, starting with the stage's name and saying
which key to lower.

What a person sees. A run with nested trainings announces its stages first (:func:`announce_stages`:
what will be trained, what is cached), and each nested training shows a rich progress bar over all
its steps with the elapsed time and an ETA (:class:`StageProgress`), plus one log line per epoch in
the run's log file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any

import lightning as L

from runner.callbacks import NonFiniteLossGuard

log = logging.getLogger(__name__)

BATCH_LIMITS = ("limit_train_batches", "limit_val_batches", "limit_test_batches", "overfit_batches")

_LIMITS: ContextVar[dict[str, Any] | None] = ContextVar("runner_nested_debug_limits", default=None)
_LIMITS_ENV = "RUNNER_NESTED_DEBUG_LIMITS"
# the outer run's folder (paths.output_dir): nested trainings write under <it>/nested/<stage>
_OUTPUT_DIR: ContextVar[str | None] = ContextVar("runner_nested_output_dir", default=None)


def _restricts(key: str, value: Any) -> bool:
    """Whether a Trainer batch setting limits anything (1.0 = all batches; int 1 = one batch)."""
    if value is None or isinstance(value, bool):
        return False
    if key == "overfit_batches":
        return value != 0
    return not (isinstance(value, float) and value == 1.0)


def limits_of(trainer_cfg: Mapping[str, Any] | None) -> dict[str, Any]:
    """The debug limits an outer Trainer config imposes on nested trainings."""
    trainer_cfg = trainer_cfg or {}
    limits: dict[str, Any] = {}
    fast = trainer_cfg.get("fast_dev_run", False)
    if fast:
        limits["fast_dev_run"] = fast if isinstance(fast, int) and not isinstance(fast, bool) else True
    for key in BATCH_LIMITS:
        value = trainer_cfg.get(key)
        if _restricts(key, value):
            limits[key] = value
    if limits and not fast and trainer_cfg.get("max_epochs"):
        limits["max_epochs"] = int(trainer_cfg["max_epochs"])
    return limits


@contextlib.contextmanager
def outer_run(trainer_cfg: Mapping[str, Any] | None) -> Iterator[dict[str, Any]]:
    """Record the outer run's debug limits for every nested training started inside the block (also
    in the environment, which the processes the run spawns inherit: ``trainer=ddp_sim``)."""
    limits = limits_of(trainer_cfg)
    token = _LIMITS.set(limits)
    previous = os.environ.get(_LIMITS_ENV)
    os.environ[_LIMITS_ENV] = json.dumps(limits)
    try:
        yield debug_limits()
    finally:
        _LIMITS.reset(token)
        if previous is None:
            os.environ.pop(_LIMITS_ENV, None)
        else:
            os.environ[_LIMITS_ENV] = previous


def debug_limits() -> dict[str, Any]:
    """The current run's debug limits (empty outside a debug mode or outside a run). In a process
    the run spawned (DDP workers of ``strategy=ddp_spawn``) the context variable did not travel: the
    limits come from the environment."""
    limits = _LIMITS.get()
    if limits is None and _LIMITS_ENV in os.environ:
        limits = json.loads(os.environ[_LIMITS_ENV])
    return dict(limits or {})


def apply_limits(settings: dict[str, Any], limits: Mapping[str, Any]) -> dict[str, Any]:
    """``settings`` (nested Trainer kwargs) with the debug ``limits`` laid over them.

    A loop the nested recipe switched off (``limit_val_batches=0``) stays off; ``max_epochs`` is
    capped, never raised; ``max_steps`` is capped by ``max_epochs`` x ``limit_train_batches`` when
    both are limits (a step-based recipe, like the fawning LM's, honours ``debug=limit`` too).
    """
    out = dict(settings)
    for key, value in limits.items():
        if key == "max_epochs":
            mine = out.get("max_epochs")
            out["max_epochs"] = value if mine in (None, -1) else min(int(mine), int(value))
        elif key in BATCH_LIMITS and out.get(key) == 0:
            continue
        else:
            out[key] = value
    train_limit = limits.get("limit_train_batches")
    if "max_epochs" in limits and isinstance(train_limit, int) and out.get("max_steps", -1) not in (None, -1):
        out["max_steps"] = min(int(out["max_steps"]), int(limits["max_epochs"]) * train_limit)
    return out


def nested_trainer(
    stage: str, callbacks: Sequence[L.Callback] = (), lower_key: str | None = None, **settings: Any
) -> L.Trainer:
    """A Lightning Trainer for one nested training named ``stage``, with the run's debug limits.

    Defaults: one device, no logger, no checkpoints, no model summary, no sanity check, Lightning's
    own progress bar off (the :class:`StageProgress` bar replaces it). ``settings`` are the nested
    recipe's Trainer arguments (``max_epochs``, ``max_steps``, ``accelerator``, ...). ``lower_key``
    is the config key of the nested recipe's learning rate, named when the training diverges
    (:func:`divergence_guard`).
    """
    base = {
        "devices": 1,
        "default_root_dir": nested_root_dir(stage),
        "logger": False,
        "enable_checkpointing": False,
        "enable_model_summary": False,
        "enable_progress_bar": False,
        "num_sanity_val_steps": 0,
    }
    limits = debug_limits()
    merged = apply_limits({**base, **settings}, limits)
    if limits:
        log.info("%s: debug limits of this run applied: %s", stage, describe_limits(limits))
    with quiet_lightning_info():
        return L.Trainer(
            callbacks=[StageProgress(stage), divergence_guard(stage, lower_key), *callbacks], **merged
        )


def nested_root_dir(stage: str) -> str:
    """Where a nested training writes what its module saves (a teacher's test confusion matrix):
    ``<run folder>/nested/<stage>`` inside a run (:func:`with_nested_debug_limits` records the run's
    ``paths.output_dir``), else one temporary folder per process -- never the folder the command was
    started in (Lightning's default)."""
    import tempfile

    from runner.tracking import safe_key

    name = safe_key(stage) or "stage"
    output_dir = _OUTPUT_DIR.get()
    if output_dir:
        return os.path.join(output_dir, "nested", name)
    return os.path.join(tempfile.gettempdir(), f"runner-nested-{os.getpid()}", name)


def divergence_guard(stage: str, lower_key: str | None = None) -> L.Callback:
    """The runner's divergence guard for the nested training ``stage`` (its one-line error starts
    with ``stage`` and names ``lower_key``, with the recipe's value read from the optimizer)."""
    keys = {"loss": lower_key, "update": lower_key} if lower_key else None
    return NonFiniteLossGuard(lower_keys=keys, stage=stage)


def describe_limits(limits: Mapping[str, Any] | None = None) -> str:
    """``"fast_dev_run=True"``-style text of the debug limits (the current run's by default)."""
    limits = debug_limits() if limits is None else limits
    return ", ".join(f"{k}={v}" for k, v in sorted(limits.items()))


@contextlib.contextmanager
def quiet_lightning_info() -> Iterator[None]:
    """Lightning's INFO lines (devices found, `fast_dev_run` mode, `max_steps` reached) are said once
    by the outer Trainer; a nested one keeps them to itself (warnings still show)."""
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def announce_stages(title: str, stages: Sequence[tuple[str, str]]) -> None:
    """Print (and log) the overview of a run's stages: ``[(name, what happens), ...]``."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_header=False, box=None, pad_edge=False)
    table.add_column(justify="right", style="bold")
    table.add_column(style="bold")
    table.add_column()
    for index, (name, detail) in enumerate(stages, 1):
        table.add_row(f"{index}.", name, detail)
        log.info("stage %d/%d %s: %s", index, len(stages), name, detail)
    Console(stderr=True).print(table)


class StageProgress(L.Callback):
    """A rich progress bar over all the training steps of one nested training, with elapsed time
    and ETA (``estimated_stepping_batches``), and one log line per epoch."""

    def __init__(self, stage: str):
        self.stage = stage
        self._progress: Any = None
        self._task: Any = None
        self._started = 0.0

    def setup(self, trainer: L.Trainer, module: L.LightningModule, stage: str) -> None:
        self._quiet = quiet_lightning_info()
        self._quiet.__enter__()

    def teardown(self, trainer: L.Trainer, module: L.LightningModule, stage: str) -> None:
        if getattr(self, "_quiet", None) is not None:
            self._quiet.__exit__(None, None, None)
            self._quiet = None

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._started = time.time()
        total = trainer.estimated_stepping_batches
        total = int(total) if total not in (None, float("inf")) else None
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[epoch]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self._task = self._progress.add_task(self.stage, total=total, epoch=self._epoch(trainer))
        try:
            self._progress.start()
        except Exception:  # noqa: BLE001 - another live display (an outer bar) is active: log lines only
            self._progress = None

    def _epoch(self, trainer: L.Trainer) -> str:
        if trainer.max_epochs and trainer.max_epochs > 0:
            return f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"
        return f"epoch {trainer.current_epoch + 1}"

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=trainer.global_step, epoch=self._epoch(trainer))

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        log.info(
            "%s: epoch %d/%s done (%.0fs, %d steps)",
            self.stage,
            trainer.current_epoch + 1,
            trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?",
            time.time() - self._started,
            trainer.global_step,
        )

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._stop(trainer)

    def on_exception(self, trainer: L.Trainer, module: L.LightningModule, exception: BaseException) -> None:
        self._stop(trainer)

    def _stop(self, trainer: L.Trainer) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=trainer.global_step)
            self._progress.stop()
            self._progress = None


def with_nested_debug_limits(run_fn: Any) -> Any:
    """Decorate ``run(cfg)`` so that nested trainings inside it see ``cfg.trainer``'s debug limits and
    write under ``cfg.paths.output_dir``."""
    import functools

    @functools.wraps(run_fn)
    def wrapper(cfg: Any, *args: Any, **kwargs: Any) -> Any:
        paths = cfg.get("paths") or {}
        token = _OUTPUT_DIR.set(paths.get("output_dir"))
        try:
            with outer_run(cfg.get("trainer")):
                return run_fn(cfg, *args, **kwargs)
        finally:
            _OUTPUT_DIR.reset(token)

    return wrapper
