"""Small helpers of the run flow: config printing, hashing, JSON output."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

PRINT_ORDER = (
    "experiment",
    "dataset",
    "model",
    "teacher",
    "student",
    "method",
    "fl_strategy",
    "trainer",
    "callbacks",
    "logger",
    "paths",
)


def config_tree(cfg: DictConfig):
    """The composed config as a rich Tree, one branch per top-level group."""
    import rich.syntax
    import rich.tree

    tree = rich.tree.Tree("CONFIG", style="bold", guide_style="dim")
    keys = [k for k in PRINT_ORDER if k in cfg] + [k for k in cfg if k not in PRINT_ORDER]
    for key in keys:
        branch = tree.add(str(key), style="bold")
        value = cfg[key]
        text = OmegaConf.to_yaml(value, resolve=True) if isinstance(value, DictConfig) else str(value)
        branch.add(rich.syntax.Syntax(text, "yaml", theme="ansi_dark", background_color="default"))
    return tree


def print_and_save_config(cfg: DictConfig, output_dir: Path) -> None:
    """Save the full config tree (``config_tree.log``) and the resolved YAML to the run folder, and
    print a short summary of the run on the console (:func:`run_summary`)."""
    from rich.console import Console

    quiet_duplicate_lightning_console()
    output_dir.mkdir(parents=True, exist_ok=True)
    with open(output_dir / "config_tree.log", "w") as handle:
        Console(file=handle, force_terminal=False, width=120).print(config_tree(cfg))
    (output_dir / "config_resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    console = Console()
    for label, text in run_summary(cfg, output_dir):
        console.print(f"[bold]{label:<10}[/bold] {text}", soft_wrap=True, highlight=False)


def _choices() -> dict[str, str]:
    """The config-group choices of this run (``experiment``, ``dataset``, ``teacher/vit``, ...)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return {str(k): str(v) for k, v in HydraConfig.get().runtime.choices.items() if v is not None}
    except (ValueError, AttributeError):  # outside a Hydra app
        return {}


def _config_file(relative: str) -> Path:
    """A file of the packaged config tree (``conf/`` of the checkout)."""
    from importlib import resources

    return Path(str(resources.files("runner.conf"))) / relative


def _class_name(node: Any) -> str:
    target = str(node.get("_target_", "")) if isinstance(node, DictConfig) else ""
    return target.rsplit(".", 1)[-1]


def _named(node: Any, choice: str | None) -> str:
    name = _class_name(node)
    return f"{name} ({choice})" if choice and choice != name else name or str(choice)


def run_summary(cfg: DictConfig, output_dir: Path) -> list[tuple[str, str]]:
    """At most ten (label, text) lines: experiment, data, model, method, trainer, output folder."""
    choices = _choices()
    lines = [("experiment", f"{choices.get('experiment', cfg.get('task_name'))}  (seed {cfg.get('seed')})")]
    dataset = cfg.get("dataset")
    if isinstance(dataset, DictConfig):
        name = choices.get("dataset", _class_name(dataset))
        if dataset.get("synthetic"):
            where = f"synthetic twin at {OmegaConf.select(cfg, 'dataset.synthetic_root', default='?')}"
            recipe = choices.get("recipe@_global_")
            if recipe and _config_file(f"recipe/{recipe}.yaml").is_file():
                where += f", twin-sized recipe conf/recipe/{recipe}.yaml"
        else:
            where = f"real data at {OmegaConf.select(cfg, 'dataset.root', default='?')}"
        lines.append(("data", f"{name}: {where}"))
    networks = []
    for group, label in (("model", ""), ("student", "student ")):
        if isinstance(cfg.get(group), DictConfig) and "_target_" in cfg[group]:
            networks.append(label + _named(cfg[group], choices.get(group)))
    method = cfg.get("method")
    teachers = method.get("teachers") if isinstance(method, DictConfig) else None
    for name, spec in (teachers or {}).items():
        if isinstance(spec, DictConfig) and isinstance(spec.get("net"), DictConfig):
            source = spec.get("checkpoint") or "trained first when not cached"
            networks.append(f"teacher {name} {_class_name(spec.net)} [{source}]")
    if networks:
        lines.append(("model", "; ".join(networks)))
    if isinstance(method, DictConfig):
        text = _named(method, choices.get("method"))
        if isinstance(cfg.get("fl_strategy"), DictConfig):
            text += f", strategy {_named(cfg.fl_strategy, choices.get('fl_strategy'))}"
        lines.append(("method", text))
    trainer = cfg.get("trainer")
    if isinstance(trainer, DictConfig):
        length = f"max_epochs={trainer.get('max_epochs')}"
        if trainer.get("max_steps") not in (None, -1):
            length += f", max_steps={trainer.get('max_steps')}"
        text = (
            f"{length} on {trainer.get('accelerator')} x{trainer.get('devices')}, {trainer.get('precision')}"
        )
        if "debug" in choices:
            text += f"; debug={choices['debug']} (nested trainings too)"
        lines.append(("trainer", text))
    lines.append(("output", f"{output_dir}  (full config: config_tree.log)"))
    return lines


def written_files(output_dir: Path) -> list[str]:
    """What a run wrote into its folder (hidden entries such as ``.hydra`` left out), for the last line."""
    if not output_dir.is_dir():
        return []
    return [
        p.name + ("/" if p.is_dir() else "")
        for p in sorted(output_dir.iterdir())
        if not p.name.startswith(".") and (p.is_file() or any(p.iterdir()))
    ]


def quiet_duplicate_lightning_console() -> None:
    """Lightning adds its own console handler to the ``lightning`` logger and also lets records reach
    the root logger, so under Hydra's logging each line appears twice. Keep the root's (Hydra's
    console + the run's log file) and drop Lightning's own; also drop its advertising tip."""
    import logging

    if not logging.getLogger().handlers:
        return
    lightning_logger = logging.getLogger("lightning")
    for handler in list(lightning_logger.handlers):
        if type(handler) is logging.StreamHandler:
            lightning_logger.removeHandler(handler)
    rank_zero = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropTips) for f in rank_zero.filters):
        rank_zero.addFilter(_DropTips())


class _DropTips:
    """Logging filter dropping Lightning's "💡 Tip: ..." lines."""

    def filter(self, record: Any) -> bool:
        return "Tip:" not in str(record.getMessage())[:16]


def config_hash(cfg: DictConfig) -> str:
    """sha256 (16 hex) of the resolved config without paths (same experiment on two machines = same hash)."""
    plain = OmegaConf.to_container(cfg, resolve=True)
    plain.pop("paths", None)
    plain.pop("hydra", None)
    text = json.dumps(plain, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def to_float_dict(metrics: dict[str, Any]) -> dict[str, float]:
    """Tensors and numbers to plain floats (NaN becomes None in JSON)."""
    out = {}
    for key, value in metrics.items():
        try:
            out[key] = float(value)
        except (TypeError, ValueError):
            continue
    return out


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write JSON via a temp file + rename; NaN/inf are written as null."""

    def clean(obj: Any) -> Any:
        if isinstance(obj, float) and not math.isfinite(obj):
            return None
        if isinstance(obj, dict):
            return {k: clean(v) for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [clean(v) for v in obj]
        return obj

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as handle:
        json.dump(clean(payload), handle, indent=2, sort_keys=True)
    os.replace(tmp, path)


@contextlib.contextmanager
def isolated_rng(seed: int):
    """Run a nested training (a teacher, a language model) seeded with ``seed``, then put every
    global RNG back: Python, NumPy, torch CPU and CUDA, and Lightning's ``PL_GLOBAL_SEED``.

    ``torch.random.fork_rng`` alone restores only torch's generators, so the outer run's random
    stream would depend on whether the nested training happened.
    """
    import lightning as L
    from lightning.fabric.utilities.seed import _collect_rng_states, _set_rng_states

    states = _collect_rng_states(include_cuda=True)
    global_seed = os.environ.get("PL_GLOBAL_SEED")
    try:
        L.seed_everything(seed, workers=True, verbose=False)
        yield
    finally:
        _set_rng_states(states)
        if global_seed is None:
            os.environ.pop("PL_GLOBAL_SEED", None)
        else:
            os.environ["PL_GLOBAL_SEED"] = global_seed
