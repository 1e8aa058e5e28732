"""Hydra callbacks: the end-of-sweep summary that lists failed jobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

FAILURE_FILE = "FAILED.txt"
# failed jobs of the sweeps that ended in this process, as found on disk: jobs that ran in other
# processes (hydra/launcher=joblib) record their failure only in their folder
SWEEP_FAILURES: list[str] = []


def failed_jobs(sweep_dir: str | Path) -> list[tuple[str, str]]:
    """(job folder, first line of its error) for every job of a sweep that wrote a failure file."""
    result = []
    for marker in sorted(Path(sweep_dir).glob(f"*/{FAILURE_FILE}")):
        lines = marker.read_text().splitlines()
        result.append((marker.parent.name, lines[0] if lines else "unknown error"))
    return result


class SweepSummary(Callback):
    """After a multirun, prints how many jobs ran and names each failed job with its error."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from rich.console import Console

        sweep_dir = Path(config.hydra.sweep.dir)
        jobs = (
            [p for p in sweep_dir.iterdir() if p.is_dir() and (p / ".hydra").is_dir()]
            if sweep_dir.is_dir()
            else []
        )
        failures = failed_jobs(sweep_dir)
        SWEEP_FAILURES.extend(str(sweep_dir / name) for name, _ in failures)
        console = Console(stderr=True)
        if failures:
            console.print(
                f"[bold red]sweep finished: {len(failures)} of {len(jobs)} job(s) failed[/] ({sweep_dir})",
                soft_wrap=True,
            )
            for name, error in failures:
                console.print(
                    f"  job {name}: {error}  (see {sweep_dir / name / FAILURE_FILE})",
                    soft_wrap=True,
                    markup=False,
                )
        else:
            console.print(
                f"[green]sweep finished: {len(jobs)} job(s), none failed[/] ({sweep_dir})", soft_wrap=True
            )
        console.print(f"summarise it with: python -m runner.report {sweep_dir}", soft_wrap=True)
