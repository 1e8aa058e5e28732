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
    """Print the config tree and save it (``config_tree.log``) plus the resolved YAML."""
    import rich
    from rich.console import Console

    tree = config_tree(cfg)
    rich.print(tree)
    output_dir.mkdir(parents=True, exist_ok=True)
    with open(output_dir / "config_tree.log", "w") as handle:
        Console(file=handle, force_terminal=False, width=120).print(tree)
    (output_dir / "config_resolved.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))


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
