"""Command line entry: ``python -m runner [overrides]`` and ``python -m runner -m [sweep overrides]``.

User mistakes end in one line on stderr and a non-zero exit; ``HYDRA_FULL_ERROR=1`` shows the
traceback. In a multirun a failing job is recorded (``FAILED.txt`` in its folder), the other jobs
run, and the process exits 1 after the sweep summary has named the failures.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import traceback
from importlib import resources
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from runner.errors import UserError
from runner.hydra_callbacks import FAILURE_FILE, SWEEP_FAILURES
from runner.overrides import with_data_choice

log = logging.getLogger("runner")

CONFIG_PACKAGE = "runner.conf"
FAILED_JOBS: list[str] = []


def config_root() -> Path:
    """The packaged config tree (``conf/`` of the checkout, shipped as ``runner.conf``)."""
    return Path(str(resources.files(CONFIG_PACKAGE)))


def group_options(group: str) -> list[str]:
    """Names of the YAML files of one config group."""
    folder = config_root() / group
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def check_group_choices(argv: list[str]) -> None:
    """Fail fast, in one line, on ``group=name`` where ``name`` is not a file of that group."""
    for arg in argv:
        if "=" not in arg or arg.startswith("-"):
            continue
        key, value = arg.split("=", 1)
        group = key.lstrip("+~")
        if "/" in group or "." in group or not (config_root() / group).is_dir():
            continue
        if any(ch in value for ch in "()[]{}$*?"):  # sweep functions, lists, interpolations
            continue
        options = group_options(group)
        for name in filter(None, value.split(",")):
            if name != "null" and name not in options:
                noun = "experiment" if group == "experiment" else f"{group} option"
                raise UserError(f"unknown {noun} '{name}'; valid: {', '.join(options)}")


def default_experiment() -> str:
    """The experiment ``conf/config.yaml`` picks when the command line names none."""
    import yaml

    defaults = yaml.safe_load((config_root() / "config.yaml").read_text())["defaults"]
    return next(
        entry["experiment"] for entry in defaults if isinstance(entry, dict) and "experiment" in entry
    )


def check_method_without_experiment(argv: list[str]) -> None:
    """``method=<m>`` with no ``experiment=`` lands on the default dual-teacher experiment, which pins
    a ViT-teacher entry only the distillation methods have: say so in one line."""
    chosen = dict(arg.split("=", 1) for arg in argv if "=" in arg and not arg.startswith("-"))
    method = chosen.get("method")
    if method is None or "experiment" in chosen or "," in method:
        return
    method_file = config_root() / "method" / f"{method}.yaml"
    text = method_file.read_text() if method_file.is_file() else ""
    if text and "teachers" not in text and "dual_teacher" not in text:
        raise UserError(
            f"method={method} needs an experiment: the default one ({default_experiment()}) is dual-teacher "
            f"distillation; add experiment=<name> (python -m runner experiment=nope lists them)"
        )


def find_user_error(err: BaseException | None) -> UserError | None:
    """The UserError behind ``err`` (Hydra's instantiate wraps errors raised in constructors)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, UserError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


def _full_error() -> bool:
    return os.environ.get("HYDRA_FULL_ERROR") == "1"


def _fail(message: str, code: int = 2) -> None:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def _record_failure(err: BaseException) -> None:
    output_dir = Path(HydraConfig.get().runtime.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    shown = find_user_error(err) or err
    first_line = f"{type(shown).__name__}: {shown}".splitlines()[0]
    (output_dir / FAILURE_FILE).write_text(first_line + "\n\n" + traceback.format_exc())
    FAILED_JOBS.append(str(output_dir))
    log.error("job %s failed: %s (the sweep goes on)", output_dir.name, first_line)


def resume_command(cfg: DictConfig) -> str:
    """How to continue an interrupted job: its overrides plus ``ckpt_path=`` its newest checkpoint."""
    import shlex

    overrides = [
        o
        for o in HydraConfig.get().overrides.task
        if not o.lstrip("+~").startswith(("ckpt_path=", "resume="))
    ]
    last = Path(str(cfg.paths.output_dir)) / "checkpoints" / "last.ckpt"
    checkpoint = str(last) if last.is_file() else cfg.get("ckpt_path")
    if not checkpoint:
        return "no checkpoint was written yet; rerun the same command (finished nested trainings are cached)"
    return "resume with: " + shlex.join(["python", "-m", "runner", *overrides, f"ckpt_path={checkpoint}"])


def _interrupted(cfg: DictConfig, interrupted: BaseException) -> None:
    """One line on stderr and exit 128 + the signal number (a sweep stops too)."""
    message = f"interrupted by {interrupted.signal_name}; {resume_command(cfg)}"
    log.error(message)
    print(message, file=sys.stderr, flush=True)
    raise SystemExit(interrupted.exit_code)


def task(cfg: DictConfig) -> float | None:
    """One Hydra job: run the experiment, turning failures into clear reports."""
    from runner.interrupts import RunInterrupted, handle_interrupts

    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        with handle_interrupts():  # SIGTERM / SIGINT: exit non-zero, saying how to resume
            from runner.validation import validate_config

            validate_config(cfg)  # before the heavy imports and any twin: a bad value fails in seconds
            from runner.train import run  # heavy imports after the checks

            return run(cfg)
    except RunInterrupted as interrupted:
        _interrupted(cfg, interrupted)
    except Exception as err:  # noqa: BLE001 - every failure is reported, none is swallowed
        if multirun:
            _record_failure(err)
            return math.nan
        user_error = find_user_error(err)
        if user_error is not None and not _full_error():
            _fail(str(user_error))
        raise


@hydra.main(version_base="1.3", config_path="pkg://runner.conf", config_name="config")
def _hydra_main(cfg: DictConfig) -> float | None:
    return task(cfg)


def main() -> None:
    """``python -m runner``: check group names, run Hydra, exit 1 if a sweep had failures."""
    sys.argv[1:] = with_data_choice(sys.argv[1:])  # dataset.synthetic=true -> data=twin (its twin recipe)
    try:
        check_group_choices(sys.argv[1:])
        check_method_without_experiment(sys.argv[1:])
    except UserError as err:
        if _full_error():
            raise
        _fail(str(err))
    _hydra_main()
    if FAILED_JOBS or SWEEP_FAILURES:  # SWEEP_FAILURES: also jobs a parallel launcher ran elsewhere
        raise SystemExit(1)


if __name__ == "__main__":
    main()
