"""``RunnerTableSweeper``: the jobs of a results table (:func:`runner.tables.expand`) through the launcher.

The table comes from the composed config's ``table`` node (so ``table.seeds=[0]`` or
``table.select=[digits]`` on the command line change it). Every job is launched with the table's
overrides for it followed by the command line's fixed overrides (a command-line key wins; ``seed=``
replaces ``table.seeds``). Sweeps of other keys on the command line are refused: a table's factors
live in its config (a section's ``grid``).

Job folders are numbered by each job's place in the whole table (``table.select`` runs some of them
and leaves the others' numbers free, so the parts of a table can run into one folder at different
times, and the report reads them together). With ``resume`` (default) a job whose folder already
holds ``metrics.json`` written with the same overrides is not run again, so a killed table continues
when the same command is run again with ``hydra.sweep.dir=<that folder>``. The ``first`` jobs (they
train something the other jobs share) run as a batch of their own before the rest.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)


class RunnerTableSweeper(Sweeper):
    """See the module docstring. Arguments come from ``hydra.sweeper`` (``RunnerTableSweeperConf``)."""

    def __init__(self, resume: bool = True) -> None:
        self.resume = bool(resume)
        self.config: DictConfig | None = None
        self.launcher = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def command_line(self, arguments: Sequence[str]) -> tuple[list[str], list[int] | None]:
        """(fixed overrides of the command line, its seeds or None)."""
        from runner.errors import UserError

        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        fixed: list[str] = []
        seeds: list[int] | None = None
        for override in parser.parse_overrides(list(arguments)):
            key = override.get_key_element()
            if key == "seed":
                values = (
                    override.sweep_string_iterator() if override.is_sweep_override() else [override.value()]
                )
                seeds = [int(v) for v in values]
            elif override.is_sweep_override():
                raise UserError(
                    f"{override.input_line}: a table sweeps its own arms and seeds; put this factor in the "
                    "table config (a section's grid) or run it without table="
                )
            else:
                fixed.append(override.input_line)
        return fixed, seeds

    def jobs(self, arguments: Sequence[str]) -> tuple[dict[int, list[str]], int]:
        """({job folder number: its overrides} of the selected jobs, how many jobs at the front of the
        whole table form the ``first`` batch)."""
        from runner.errors import UserError
        from runner.tables import expand, first_count, merge_overrides

        table = self.config.get("table")
        if table is None or not table.get("sections"):
            raise UserError("hydra/sweeper=runner_table needs a table: python -m runner -m table=<paper>")
        fixed, seeds = self.command_line(arguments)
        jobs = expand(table, seeds)
        return {job.index: merge_overrides(job.command_overrides(), fixed) for job in jobs}, first_count(
            table
        )

    @staticmethod
    def finished(job_dir: Path, overrides: list[str]) -> bool:
        """The job's folder holds metrics.json from a run with exactly these overrides."""
        saved = job_dir / ".hydra" / "overrides.yaml"
        if not (job_dir / "metrics.json").is_file() or not saved.is_file():
            return False
        return list(yaml.safe_load(saved.read_text()) or []) == list(overrides)

    def sweep(self, arguments: list[str]) -> Any:
        assert self.config is not None and self.launcher is not None
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        from runner.errors import UserError

        try:
            jobs, n_first = self.jobs(arguments)
        except UserError as err:  # a user's mistake: one line and exit 2, as python -m runner's own
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        pending = [
            i
            for i, overrides in jobs.items()
            if not (self.resume and self.finished(sweep_dir / str(i), overrides))
        ]
        log.info(
            "table %s: %d job(s) in %s%s",
            self.config.table.get("name", "?"),
            len(jobs),
            sweep_dir,
            f", {len(jobs) - len(pending)} already finished (kept)" if len(pending) < len(jobs) else "",
        )
        returns = []
        for start, batch in contiguous_batches(pending, boundary=n_first):
            returns.append(self.launcher.launch([jobs[i] for i in batch], initial_job_idx=start))
        return returns


def contiguous_batches(indices: Sequence[int], boundary: int = 0) -> list[tuple[int, list[int]]]:
    """``indices`` cut into runs of consecutive numbers, also cut at ``boundary`` (the ``first`` jobs
    end there): each run is launched as one batch whose job numbers are its indices."""
    batches: list[tuple[int, list[int]]] = []
    for i in indices:
        if batches and i == batches[-1][1][-1] + 1 and i != boundary:
            batches[-1][1].append(i)
        else:
            batches.append((i, [i]))
    return batches
