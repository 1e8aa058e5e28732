"""The flow of one run (design.md, "The flow of one run").

validate → print/save config → seed → build datamodule, networks, method, callbacks, loggers,
trainer (all via ``_target_``) → fit → test → ``metrics.json`` → return the objective.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from runner.callbacks import DataPresenceCounter, NonFiniteLossGuard, divergence_keys
from runner.checkpointing import (
    RESUME_KEYS,
    clean_stale_tmp_files,
    find_resume_checkpoint,
    load_checkpoint,
    make_hparams_plain,
    read_callback_state,
    safe_checkpoint_globals,
)
from runner.data.skips import reset_skips, skipped
from runner.errors import UserError
from runner.nested import with_nested_debug_limits
from runner.parallel import configure_torch_threads, trainer_adjustments
from runner.tracking import RunConfigLogger, git_commit, wandb_run_fields
from runner.utils import (
    config_hash,
    print_and_save_config,
    to_float_dict,
    write_json_atomic,
    written_files,
)
from runner.validation import validate_config

log = logging.getLogger(__name__)

# config groups holding networks, and the keyword the method receives each one under
NETWORK_GROUPS = {"model": "net", "teacher": "teacher", "student": "student"}


def data_properties(datamodule: Any) -> dict[str, Any]:
    """What networks and methods need to know about the data (class count, users/items, ...).

    A datamodule may define ``network_kwargs() -> dict``; otherwise its ``num_classes`` is used.
    """
    if hasattr(datamodule, "network_kwargs"):
        return dict(datamodule.network_kwargs())
    if getattr(datamodule, "num_classes", None) is not None:
        return {"num_classes": int(datamodule.num_classes)}
    return {}


def accepted_kwargs(node: DictConfig, candidates: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``candidates`` that the ``_target_`` of ``node`` accepts (all of them if it
    takes ``**kwargs``), minus keys the config sets itself."""
    import inspect

    from hydra.utils import get_object

    target = get_object(node._target_)
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return dict(candidates)
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    return {
        k: v
        for k, v in candidates.items()
        if (takes_any or k in params) and OmegaConf.select(node, k) is None
    }


def build_networks(cfg: DictConfig, properties: dict[str, Any]) -> dict[str, Any]:
    """Instantiate every network group present (model / teacher / student) with the data's properties."""
    networks = {}
    for group, keyword in NETWORK_GROUPS.items():
        node = cfg.get(group)
        if node is None or "_target_" not in node:
            continue
        networks[keyword] = instantiate(node, **accepted_kwargs(node, properties))
    return networks


def build_callbacks(cfg: DictConfig) -> list[L.Callback]:
    """Every callback of the ``callbacks`` group (entries set to null are skipped)."""
    node = cfg.get("callbacks") or {}
    return [instantiate(spec) for spec in node.values() if spec is not None and "_target_" in spec]


def build_loggers(cfg: DictConfig, wandb_run_id: str | None) -> list[Any]:
    """Every logger of the ``logger`` group; a W&B logger continues ``wandb_run_id`` when resuming."""
    loggers = []
    for spec in (cfg.get("logger") or {}).values():
        if spec is None or "_target_" not in spec:
            continue
        extra = {}
        if spec._target_.endswith("WandbLogger"):
            extra = wandb_run_fields(cfg, spec)  # name (overrides, seed), group (sweep), job_type (method)
            if wandb_run_id and not spec.get("id"):
                extra.update(id=wandb_run_id, resume="allow")
                log.info("continuing W&B run %s", wandb_run_id)
        loggers.append(instantiate(spec, **extra))
    return loggers


def resolve_checkpoint(cfg: DictConfig) -> str | None:
    """The checkpoint to resume from: ``ckpt_path`` if given (must exist), else ``resume=auto``'s pick."""
    if cfg.get("ckpt_path"):
        path = Path(str(cfg.ckpt_path)).expanduser()
        if not path.is_file():
            raise UserError(f"ckpt_path={cfg.ckpt_path} does not exist; give a .ckpt file or use resume=auto")
        clean_stale_tmp_files(path.parent)
        load_checkpoint(path, require=RESUME_KEYS)  # corrupt / truncated / foreign: one line naming it
        return str(path)
    if cfg.get("resume") == "auto":
        found = find_resume_checkpoint(cfg.paths.output_dir, cfg.paths.log_dir, cfg.task_name)
        if found is None:
            log.warning(
                "resume=auto: no last.ckpt for task %s under %s; starting fresh",
                cfg.task_name,
                cfg.paths.log_dir,
            )
        else:
            log.info("resume=auto: continuing from %s", found)
        return found
    return None


def _finish_wandb() -> None:
    """Close the W&B run if one was started (so offline runs are flushed and the next run is clean)."""
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


@with_nested_debug_limits  # nested trainings (teachers, LMs, experts) honour debug=fdr/limit
def run(cfg: DictConfig) -> float | None:
    """Run one experiment; returns ``cfg.optimized_metric`` (None if it was never logged)."""
    started = time.time()
    reset_skips()
    validate_config(cfg)
    torch_threads = configure_torch_threads(cfg)
    output_dir = Path(cfg.paths.output_dir)
    print_and_save_config(cfg, output_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    log.info("seed %s", cfg.seed)

    try:
        datamodule = instantiate(cfg.dataset)
    except Exception as err:
        _raise_with_method_inputs(err, cfg)
        raise
    properties = data_properties(datamodule)
    networks = build_networks(cfg, properties)
    module = instantiate(cfg.method, **networks, **accepted_kwargs(cfg.method, properties))
    make_hparams_plain(module, datamodule)  # checkpoints load with weights_only=True (resume, test_ckpt)

    ckpt_path = resolve_checkpoint(cfg)
    wandb_run_id = read_callback_state(ckpt_path, "RunMetadata").get("wandb_run_id") if ckpt_path else None
    callbacks = build_callbacks(cfg)
    callbacks.append(RunConfigLogger(cfg))  # the whole config + experiment, overrides, seed, hash, commit
    presence = DataPresenceCounter()  # no silent success: a run with no training / test batch fails
    callbacks.append(presence)
    _name_divergence_keys(cfg, callbacks)
    loggers = build_loggers(cfg, wandb_run_id)
    trainer: L.Trainer = instantiate(
        cfg.trainer, callbacks=callbacks, logger=loggers or False, **trainer_adjustments(cfg)
    )

    metrics: dict[str, float] = {}
    try:
        if cfg.get("train", True):
            clean_stale_tmp_files(output_dir / "checkpoints")
            with torch.serialization.safe_globals(safe_checkpoint_globals()), _naming_checkpoint(ckpt_path):
                trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
            _check_trained(trainer, presence, cfg)
            metrics.update(to_float_dict(trainer.callback_metrics))
        if cfg.get("test", True):
            test_ckpt = _test_checkpoint(cfg, trainer, ckpt_path)
            if test_ckpt:
                log.info("testing the best checkpoint %s", test_ckpt)
            with torch.serialization.safe_globals(safe_checkpoint_globals()), _naming_checkpoint(test_ckpt):
                trainer.test(module, datamodule=datamodule, ckpt_path=test_ckpt, weights_only=True)
            _check_evaluated(trainer, presence, cfg)
            metrics.update(to_float_dict(trainer.callback_metrics))
    finally:
        _finish_wandb()

    objective = metrics.get(cfg.get("optimized_metric") or "")
    corrupt = next((cb.summary() for cb in callbacks if hasattr(cb, "summary")), {"count": 0, "paths": []})
    if trainer.is_global_zero:
        write_json_atomic(
            output_dir / "metrics.json",
            {
                "metrics": metrics,
                "objective": {"name": cfg.get("optimized_metric"), "value": objective},
                "config_hash": config_hash(cfg),
                "seed": cfg.seed,
                "torch_threads": torch_threads,
                "task_name": cfg.task_name,
                "wall_time_s": round(time.time() - started, 3),
                "git_commit": git_commit(),
                "corrupt_samples": corrupt,
                "skipped": skipped(),
                "resumed_from": ckpt_path,
                "overrides": _overrides(cfg),
                "data": {k: v for k, v in properties.items() if isinstance(v, int | float | str)},
            },
        )
        _print_metrics(metrics, output_dir, properties.get("num_classes"))
    return objective


def _name_divergence_keys(cfg: DictConfig, callbacks: list[L.Callback]) -> None:
    """Tell the divergence guard which learning rates this run's config has (and their values)."""
    keys = divergence_keys(cfg)
    for callback in callbacks:
        if isinstance(callback, NonFiniteLossGuard):
            callback.lower_keys = {**keys, **callback.lower_keys}
            callback.lower_values = {k: OmegaConf.select(cfg, k) for k in callback.lower_keys.values()}


@contextlib.contextmanager
def _naming_checkpoint(ckpt_path: str | None):
    """A checkpoint that loads but does not fit this run's model / optimizer (another experiment's)
    becomes one line naming the file."""
    try:
        yield
    except (RuntimeError, ValueError, KeyError) as err:
        text = str(err)
        mismatch = ("Error(s) in loading state_dict", "size mismatch", "parameter group", "optimizer_states")
        if ckpt_path is None or not any(m in text for m in mismatch):
            raise
        first = text.splitlines()[0][:200]
        raise UserError(
            f"checkpoint {ckpt_path} does not fit this run (written by another model or experiment?): {first}"
        ) from err


def _dataset_name(cfg: DictConfig) -> str:
    root = "the twin" if OmegaConf.select(cfg, "dataset.synthetic") else OmegaConf.select(cfg, "dataset.root")
    return f"{OmegaConf.select(cfg, 'task_name')} ({root or 'its dataset'})"


def _counted_in_spawned_workers(trainer: L.Trainer) -> bool:
    """``strategy=ddp_spawn`` (``trainer=ddp_sim``) runs fit and test in spawned processes: this
    process's :class:`DataPresenceCounter` is a copy that never sees a batch."""
    from lightning.pytorch.strategies.launchers.multiprocessing import _MultiProcessingLauncher

    return isinstance(getattr(trainer.strategy, "launcher", None), _MultiProcessingLauncher)


def _check_trained(trainer: L.Trainer, presence: DataPresenceCounter, cfg: DictConfig) -> None:
    """No silent success: fail when fit saw no training batch with a sample in it."""
    if presence.train_batches or trainer.limit_train_batches == 0 or trainer.max_epochs == 0:
        return
    if _counted_in_spawned_workers(trainer):
        return
    detail = "; ".join(f"{e['source']}: {e['count']} {e['reason']}" for e in skipped())
    raise UserError(
        f"no training batch was produced for {_dataset_name(cfg)}: the training set is empty or every sample "
        f"was skipped" + (f" ({detail})" if detail else " (see the log for skipped samples)")
    )


def _check_evaluated(trainer: L.Trainer, presence: DataPresenceCounter, cfg: DictConfig) -> None:
    """No silent success: fail when the test loop saw no batch with a sample in it."""
    if presence.test_batches or trainer.limit_test_batches == 0 or _counted_in_spawned_workers(trainer):
        return
    detail = "; ".join(f"{e['source']}: {e['count']} {e['reason']}" for e in skipped())
    raise UserError(
        f"the evaluation set of {_dataset_name(cfg)} is empty: no test batch held a sample"
        + (f" ({detail})" if detail else "")
    )


def _raise_with_method_inputs(err: BaseException, cfg: DictConfig) -> None:
    """A missing-data error names, in the same line, what else the method needs (a method class may
    define ``input_notes(method_cfg) -> list[str]``: e.g. teacher weights, or that they are trained first)."""
    from hydra.utils import get_object

    cause: BaseException | None = err
    while cause is not None and not isinstance(cause, UserError):
        cause = cause.__cause__ or cause.__context__
    method = cfg.get("method")
    if cause is None or not isinstance(method, DictConfig) or "_target_" not in method:
        return
    notes = getattr(get_object(method._target_), "input_notes", None)
    if notes is not None and (lines := notes(method)):
        raise UserError(f"{cause}; {'; '.join(lines)}") from err


def _test_checkpoint(cfg: DictConfig, trainer: L.Trainer, resumed_from: str | None) -> str | None:
    """Which weights ``test`` uses: ``test_ckpt=last`` (default) the weights at the end of fit;
    ``test_ckpt=best`` the best checkpoint by ``optimized_metric`` (selection on the val split, which
    for HMDB51 — no val split — is the test split, hence not the default)."""
    if not cfg.get("train", True):
        return resumed_from
    if cfg.get("test_ckpt", "last") == "best":
        return _best_checkpoint(trainer)
    return None


def _best_checkpoint(trainer: L.Trainer) -> str | None:
    """The best checkpoint of the ModelCheckpoint that monitors a metric (None if there is none)."""
    for callback in trainer.checkpoint_callbacks:
        path = getattr(callback, "best_model_path", "")
        if getattr(callback, "monitor", None) and path and Path(path).is_file():
            return path
    return None


def _overrides(cfg: DictConfig) -> list[str]:
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task)
    except ValueError:  # outside a Hydra app (tests composing configs)
        return []


def _print_metrics(metrics: dict[str, float], output_dir: Path, num_classes: int | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="final metrics")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in sorted(metrics):
        table.add_row(key, f"{metrics[key]:.4f}")
    console = Console()
    console.print(table)
    if num_classes:
        console.print(f"chance level (uniform guess over {num_classes} classes): {1 / num_classes:.4f}")
    console.print(f"written to {output_dir}: {', '.join(written_files(output_dir))}", soft_wrap=True)
