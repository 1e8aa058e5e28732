"""``RunnerTableSweeper``: the jobs of a results table (:func:`runner.tables.expand`) through the launcher.

The table comes from the composed config's ``table`` node (so ``table.seeds=[0]`` or
``table.select=[digits]`` on the command line change it). Every job is launched with the table's
overrides for it followed by the command line's fixed overrides (a command-line key wins; ``seed=``
replaces ``table.seeds``). Sweeps of other keys on the command line are refused: a table's factors
live in its config (a section's ``grid``).

Each job's folder is named after its row: ``<section>-<arm>-<grid values>-s<seed>``
(:meth:`runner.tables.TableJob.folder_name`). With ``resume`` (default) a job is not run again when
any folder of the sweep already holds a ``metrics.json`` from a run with exactly its overrides, so a
killed table continues, a part of a table (``table.select``) runs into the same folder later, and a
table that grows (a new arm, seed or grid value) runs only its new jobs, when the same command is run
again with ``hydra.sweep.dir=<that folder>``. The ``first`` jobs (they
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

    def jobs(self, arguments: Sequence[str]) -> list[tuple[str, list[str], bool]]:
        """(job folder name, overrides, whether it is one of the ``first`` jobs) of every selected job."""
        from runner.errors import UserError
        from runner.tables import expand, merge_overrides

        table = self.config.get("table")
        if table is None or not table.get("sections"):
            raise UserError("hydra/sweeper=runner_table needs a table: python -m runner -m table=<paper>")
        fixed, seeds = self.command_line(arguments)
        first = set(table.get("first") or [])
        jobs, seen = [], set()
        for job in expand(table, seeds):
            leads = job.arm in first and (job.section, job.arm) not in seen
            seen.add((job.section, job.arm))
            jobs.append((job.folder_name(), merge_overrides(job.command_overrides(), fixed), leads))
        return jobs

    @staticmethod
    def finished_runs(sweep_dir: Path) -> set[tuple[str, ...]]:
        """What every job folder of ``sweep_dir`` that holds a metrics.json ran (:func:`what_runs`)."""
        done = set()
        for metrics in sweep_dir.glob("*/metrics.json"):
            saved = metrics.parent / ".hydra" / "overrides.yaml"
            if saved.is_file():
                done.add(what_runs(yaml.safe_load(saved.read_text()) or []))
        return done

    @staticmethod
    def recorded(path: Path) -> set[tuple[str, frozenset[str]]]:
        """What the records of a table's ``runs/`` folder ran (``table.records``; a user error when the
        folder is missing, since a typo would otherwise rerun the whole table)."""
        from runner.errors import UserError
        from runner.table_archive import recorded_runs

        if not path.is_dir():
            raise UserError(f"table.records={path}: no such folder (give experiments/<paper> or its runs/)")
        return recorded_runs(path)

    def sweep(self, arguments: list[str]) -> Any:
        assert self.config is not None and self.launcher is not None
        sweep_dir = Path(self.config.hydra.sweep.dir)
        from runner.errors import UserError
        from runner.table_archive import run_identity

        records = self.config.table.get("records")
        try:
            jobs = self.jobs(arguments)
            recorded = self.recorded(Path(str(records))) if records else set()
        except UserError as err:  # a user's mistake: one line and exit 2, as python -m runner's own
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(2) from None
        done = self.finished_runs(sweep_dir) if self.resume else set()
        pending = [job for job in jobs if what_runs(job[1]) not in done]
        finished = len(jobs) - len(pending)
        pending = [job for job in pending if run_identity(job[0], job[1]) not in recorded]
        log.info(
            "table %s: %d job(s) in %s%s%s",
            self.config.table.get("name", "?"),
            len(jobs),
            sweep_dir,
            f", {finished} already finished (kept)" if finished else "",
            f", {len(jobs) - finished - len(pending)} already recorded in {records} (not run again)"
            if records
            else "",
        )
        if not pending and not sweep_dir.is_dir():  # nothing to run: no empty sweep folder either
            return []
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        batches = [[job for job in pending if job[2]], [job for job in pending if not job[2]]]
        returns, number = [], 0
        for batch in filter(
            None, batches
        ):  # the first jobs (they cache what the others share), then the rest
            launched = [[*overrides, f"hydra.sweep.subdir={name}"] for name, overrides, _ in batch]
            returns.append(self.launcher.launch(launched, initial_job_idx=number))
            number += len(batch)
        return returns


def what_runs(overrides: Sequence[str]) -> tuple[str, ...]:
    """A job's overrides without those that only shape the table (``table.select=``, ``table.seeds=``,
    edits of ``table.sections...``): two jobs with the same result run the same thing. Its row
    (``table.section``, ``table.arm``) is kept (:func:`runner.tables.only_shapes_the_table`)."""
    from runner.tables import only_shapes_the_table

    return tuple(line for line in overrides if not only_shapes_the_table(line))
