"""What every logger receives beyond scalars: the run's identity and whole config, final tables and
figures -- the same calls for CSV, TensorBoard and W&B.

* :func:`logged_config`: the resolved config, flattened (``dataset.batch_size``), plus ``run.*`` keys:
  experiment, overrides, seed, config hash and git commit. The :class:`RunConfigLogger` callback hands
  it to every logger at setup (W&B run config, TensorBoard hparams, CSV ``hparams.yaml``);
  :func:`log_run_config` does the same for a list of loggers outside a Trainer.
* :func:`wandb_run_fields`: W&B ``name`` (task, overrides, seed), ``group`` (the sweep) and
  ``job_type`` (the method, or the FL strategy) for fields the config leaves null.
* :func:`log_table` / :func:`log_image`: a method logs a final table or a figure once; it is written
  into the run folder (``tables/<key>.csv``, ``figures/<key>.png``; read by ``runner.report``) and
  sent to each logger that shows media (W&B table / image, TensorBoard text / image).
  :func:`log_confusion_matrix` builds on both.
* :class:`CurveFigure`: at the end of fit, the run's epoch-level metric curves (the figure
  ``runner.report`` draws for a sweep) as the image ``curves``.

Only the global-zero process writes or logs tables and images.
"""

from __future__ import annotations

import csv
import functools
import json
import logging
import re
import subprocess
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

TABLES_DIR = "tables"
FIGURES_DIR = "figures"
# override prefixes that say where a run writes, not what it runs (left out of run names)
PLACEMENT_PREFIXES = ("hydra.", "paths.", "hydra/")
MAX_NAME_LENGTH = 120


# ---- the run's identity ---------------------------------------------------------------------------
@functools.cache
def git_commit(directory: str | None = None) -> str | None:
    """``HEAD`` of the checkout holding ``directory`` (default: this package), ``+dirty`` when tracked
    files changed; None outside a git checkout."""
    cwd = directory or str(Path(__file__).resolve().parent)
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=20,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if dirty else head or None


def _hydra() -> DictConfig | None:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get() if HydraConfig.initialized() else None


def run_overrides() -> list[str]:
    """The command-line overrides of this job (a sweep's job: the base ones plus its own values)."""
    hydra = _hydra()
    return list(hydra.overrides.task) if hydra is not None else []


def choice(group: str) -> str | None:
    """The option chosen for a config group (``experiment``, ``method``, ...), if Hydra knows it."""
    hydra = _hydra()
    if hydra is None:
        return None
    value = hydra.runtime.choices.get(group)
    return None if value in (None, "null") else str(value)


def sweep_name(cfg: DictConfig) -> str | None:
    """``<task>/<sweep folder>`` in a multirun, None in a single run."""
    hydra = _hydra()
    if hydra is None or str(hydra.mode) != "RunMode.MULTIRUN":
        return None
    return f"{cfg.get('task_name', 'run')}/{Path(str(hydra.sweep.dir)).name}"


def run_identity(cfg: DictConfig) -> dict[str, Any]:
    """Experiment, overrides, seed, config hash, git commit and sweep of this run."""
    from runner.utils import config_hash

    return {
        "experiment": choice("experiment") or cfg.get("task_name"),
        "task_name": cfg.get("task_name"),
        "overrides": " ".join(run_overrides()),
        "seed": cfg.get("seed"),
        "config_hash": config_hash(cfg),
        "git_commit": git_commit(),
        "sweep": sweep_name(cfg),
    }


def flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; lists of scalars stay lists, other lists become JSON."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, value in node.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(node, list) and not all(isinstance(v, str | int | float | bool) for v in node):
        return {prefix: json.dumps(node, default=str)}
    return {prefix: node}


def logged_config(cfg: DictConfig) -> dict[str, Any]:
    """The flattened resolved config (without ``hydra``) plus ``run.*`` identity keys."""
    plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    plain.pop("hydra", None)
    flat = flatten(plain)
    flat.update({f"run.{key}": value for key, value in run_identity(cfg).items()})
    return flat


def log_run_config(loggers: Sequence[Any], cfg: DictConfig) -> None:
    """Send :func:`logged_config` to every logger (before fit; Lightning adds the module's hparams)."""
    if not loggers:
        return
    flat = logged_config(cfg)
    for logger in loggers:
        logger.log_hyperparams(flat)


class RunConfigLogger(L.Callback):
    """Hands :func:`logged_config` (computed here, in the launching process) to every logger at
    ``setup``, in the process that trains: under ``ddp_spawn`` that is a spawned rank, and a logger
    touched in the launching process would carry a half-initialised writer into the spawned ones."""

    def __init__(self, cfg: DictConfig) -> None:
        self.params = logged_config(cfg)
        self._logged = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if not self._logged:
            for logger in trainer.loggers:
                logger.log_hyperparams(self.params)
            self._logged = True


def run_name(cfg: DictConfig) -> str:
    """``<task> <overrides other than placement, experiment and seed> seed=<seed>``."""
    parts = [str(cfg.get("task_name", "run"))]
    for override in run_overrides():
        key = override.lstrip("+~").split("=", 1)[0]
        if override.lstrip("+~").startswith(PLACEMENT_PREFIXES) or key in ("experiment", "seed"):
            continue
        parts.append(override)
    head, tail = " ".join(parts), f" seed={cfg.get('seed')}"
    if len(head) + len(tail) > MAX_NAME_LENGTH:  # the seed always stays readable
        head = head[: MAX_NAME_LENGTH - len(tail) - 1] + "…"
    return head + tail


def wandb_run_fields(cfg: DictConfig, spec: DictConfig) -> dict[str, str]:
    """``name`` / ``group`` / ``job_type`` for the W&B logger, each only where ``spec`` leaves it null."""
    values = {
        "name": run_name(cfg),
        "group": sweep_name(cfg) or str(cfg.get("task_name", "run")),
        "job_type": choice("fl_strategy") or choice("method") or "train",
    }
    return {key: value for key, value in values.items() if spec.get(key) is None}


# ---- tables and figures ---------------------------------------------------------------------------
def _trainer_of(target: Any) -> L.Trainer | None:
    if isinstance(target, L.Trainer):
        return target
    return getattr(target, "_trainer", None) if isinstance(target, L.LightningModule) else None


def _destination(target: Any) -> tuple[list[Any], Path | None, bool]:
    """(loggers, run folder, is global zero) of a LightningModule, a Trainer or a list of loggers."""
    trainer = _trainer_of(target)
    if trainer is not None:
        return list(trainer.loggers), Path(trainer.default_root_dir), trainer.is_global_zero
    loggers = list(target or [])
    folder = next((Path(lg.save_dir) for lg in loggers if getattr(lg, "save_dir", None)), None)
    return loggers, folder, True


def safe_key(key: str) -> str:
    """A logging key as a file name (``test/confusion matrix`` -> ``test__confusion_matrix``)."""
    return re.sub(r"[^A-Za-z0-9_.@-]+", "_", key.replace("/", "__"))


def _kind(logger: Any) -> str:
    return type(logger).__name__


def log_table(target: Any, key: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Path | None:
    """Write ``tables/<key>.csv`` in the run folder and log the table to every logger that shows tables
    (W&B: ``wandb.Table``; TensorBoard: a markdown text). ``target``: a LightningModule, a Trainer or
    a list of loggers. Returns the CSV path (None on non-zero ranks)."""
    loggers, folder, is_zero = _destination(target)
    if not is_zero:
        return None
    rows = [[_plain(value) for value in row] for row in rows]
    path = None
    if folder is not None:
        path = folder / TABLES_DIR / f"{safe_key(key)}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(columns)
            writer.writerows(rows)
    for logger in loggers:
        if _kind(logger) == "WandbLogger":
            logger.log_table(key=key, columns=list(columns), data=rows)
        elif _kind(logger) == "TensorBoardLogger":
            logger.experiment.add_text(key, markdown_table(columns, rows), global_step=_step(target))
    return path


def log_image(target: Any, key: str, figure: Any) -> Path | None:
    """Save a matplotlib figure as ``figures/<key>.png`` in the run folder and log it to every logger
    that shows images (W&B image, TensorBoard image). Returns the PNG path (None on non-zero ranks)."""
    loggers, folder, is_zero = _destination(target)
    if not is_zero:
        return None
    if folder is None:
        return None
    path = folder / FIGURES_DIR / f"{safe_key(key)}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    for logger in loggers:
        if _kind(logger) == "WandbLogger":
            logger.log_image(key=key, images=[str(path)])
        elif _kind(logger) == "TensorBoardLogger":
            logger.experiment.add_figure(key, figure, global_step=_step(target), close=False)
    return path


def log_confusion_matrix(
    target: Any, key: str, matrix: Any, class_names: Sequence[str] | None = None
) -> None:
    """A ``[C, C]`` confusion matrix (rows: true class, columns: predicted) as a table
    (``true, predicted, count``) and a heat-map image."""
    import numpy as np

    counts = np.asarray(matrix.detach().cpu() if hasattr(matrix, "detach") else matrix, dtype=np.int64)
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(counts))]
    if len(names) != len(counts):
        names = [str(i) for i in range(len(counts))]
    rows = [[names[i], names[j], int(counts[i, j])] for i in range(len(counts)) for j in range(len(counts))]
    log_table(target, key, ["true", "predicted", "count"], rows)
    _, _, is_zero = _destination(target)
    if is_zero:
        figure = confusion_matrix_figure(counts, names, title=key.replace("/", " ").replace("_", " "))
        log_image(target, key, figure)
        _close(figure)


def confusion_matrix_figure(counts: Any, names: Sequence[str], title: str = "confusion matrix"):
    """Heat map of row-normalised counts, the raw count written in each cell when there are few classes."""
    import numpy as np

    plt = _pyplot()
    counts = np.asarray(counts)
    n = len(counts)
    rates = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    size = min(12.0, 2.5 + 0.35 * n)
    figure, ax = plt.subplots(figsize=(size + 1.0, size))
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    if n <= 30:
        ax.set_xticks(range(n), names, rotation=90, fontsize=7)
        ax.set_yticks(range(n), names, fontsize=7)
    if n <= 15:
        for i in range(n):
            for j in range(n):
                colour = "white" if rates[i, j] > 0.5 else "black"
                ax.text(j, i, str(int(counts[i, j])), ha="center", va="center", fontsize=7, color=colour)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    figure.tight_layout()
    return figure


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(map(str, columns)) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _plain(value: Any) -> Any:
    """Tensors / numpy scalars as Python numbers (tables hold plain values)."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()
    return value


def _step(target: Any) -> int:
    trainer = _trainer_of(target)
    return int(trainer.global_step) if trainer is not None else 0


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _close(figure: Any) -> None:
    _pyplot().close(figure)


# ---- the run's curves -----------------------------------------------------------------------------
class CurveFigure(L.Callback):
    """Records the epoch-level metrics of every train / validation epoch and, at the end of fit, logs
    the curves ``runner.report`` draws for a sweep (validation metrics, training loss) as one figure
    (``curves``; ``figures/curves.png`` in the run folder). Nothing is drawn with fewer than two
    epochs (``debug=fdr``)."""

    def __init__(self, key: str = "curves") -> None:
        self.key = key
        self.history: dict[str, dict[int, float]] = defaultdict(dict)

    def _record(self, trainer: L.Trainer) -> None:
        if trainer.sanity_checking:
            return
        for name, value in trainer.callback_metrics.items():
            if name.endswith("_step") or name.startswith("test/"):
                continue
            try:
                self.history[name.removesuffix("_epoch")][trainer.current_epoch] = float(value)
            except (TypeError, ValueError):
                continue

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record(trainer)

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._record(trainer)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epochs = {epoch for points in self.history.values() for epoch in points}
        if not trainer.is_global_zero or len(epochs) < 2:  # a curve needs two epochs (not debug=fdr)
            return
        from runner.report import curve_metrics, curves_figure

        names = curve_metrics(set(self.history))
        label = str(getattr(pl_module, "__class__", type(pl_module)).__name__)
        figure = curves_figure({name: {label: dict(sorted(self.history[name].items()))} for name in names})
        if figure is not None:
            log_image(trainer, self.key, figure)
            _close(figure)

    def state_dict(self) -> dict[str, Any]:
        return {"history": {k: dict(v) for k, v in self.history.items()}}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        for name, points in (state_dict.get("history") or {}).items():
            self.history[name].update({int(k): float(v) for k, v in points.items()})
