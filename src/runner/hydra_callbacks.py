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


def report_hint(config: DictConfig, sweep_dir: Path, ran: int) -> str:
    """The command that reports a finished multirun: a table sweep's keeps its records under
    ``experiments/<paper>`` (or the ``table.records`` folder); with nothing left to run, rebuild from them."""
    table = config.get("table")
    if table is None or not table.get("sections"):
        return f"summarise it with: python -m runner.report {sweep_dir}"
    from runner.table_archive import records_folder

    records = table.get("records")
    out = (
        records_folder(Path(str(records))).parent if records else Path("experiments") / str(table.get("name"))
    )
    if records and not ran:
        return (
            f"nothing left to run (every job is recorded); rebuild the table with: "
            f"python -m runner.report {out / 'runs'} --out {out}"
        )
    return f"report it with: python -m runner.report {sweep_dir} --out {out}"


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
        if not sweep_dir.is_dir():
            console.print("sweep finished: nothing ran, no sweep folder written", soft_wrap=True)
        elif failures:
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
        console.print(report_hint(config, sweep_dir, ran=len(jobs)), soft_wrap=True)
