"""A paper's results table as a sweep: the jobs of ``conf/table/<paper>.yaml``.

``python -m runner -m table=<paper>`` runs every job of the table through the normal flow
(:func:`runner.train.run`: Trainer, callbacks, ``metrics.json``), in parallel with the joblib launcher
on a CPU (one torch thread per job), and ``python -m runner.report <sweep dir> --out experiments/<paper>``
writes its ``results.md`` + PNG (claims first, see :mod:`runner.claims`).

A table config (``# @package _global_``) selects ``hydra/sweeper: runner_table`` and holds a ``table``
node::

    table:
      name: dual_teacher           # the sweep folder: logs/tables/<name>/<time>
      title: Dual-teacher KD on the HMDB51 twin
      seeds: [0, 1, 2]
      overrides: [...]              # every job (optional)
      first: [kd_cnn, kd_vit]       # arms whose first-seed job runs before the rest (they train and cache
                                    # something the other jobs share, e.g. a teacher)
      metrics: [test/acc, train/acc]  # the table's columns (default: every test/ and val/ metric)
      sections:                     # one block of results.md each (a dataset, an imbalance factor, ...)
        hmdb:
          overrides: [experiment=dual_teacher_hmdb_twin, ...]
          grid: {fl_strategy.attack: [none, alie]}   # optional factors crossed with every arm (cells)
          arms:                     # the table's rows: name -> overrides
            dt_student_alone: {overrides: [method=dt_student_alone], grid: {}}   # its own grid (here none)
            dual_teacher: {overrides: [method=dual_teacher], label: "DT-KD (DATW + SDD + RKD)"}
      claims: [...]                 # see runner.claims
      trivial: {...}

The jobs are every (section, arm, grid cell, seed), in that order (a row's jobs together, so a sweep
cut short leaves whole rows), with the ``first`` jobs moved to the front. An arm's own ``grid`` replaces
the section's for that arm (``grid: {}``: the arm has nothing to cross, e.g. a row without the tuned
term; :func:`arm_grid`). Each job's overrides: the table's, the section's, the grid cell's, the arm's, ``seed=<s>``,
then ``++table.section=<section>`` and ``++table.arm=<arm>`` (how :mod:`runner.report` finds its row); the
command line's own overrides come last and win over a table value of the same key (``seed=0`` or
``seed=0,1`` replaces ``table.seeds``). ``table.select=[<section>|<section>/<arm>|<arm>, ...]`` runs a
part of the table.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from runner.errors import UserError
from runner.overrides import with_data_choice

ARM_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


@dataclass(frozen=True)
class TableJob:
    """One job of a table: its row (section, arm), grid cell, seed and the overrides that make it."""

    section: str
    arm: str
    seed: int
    cell: tuple[tuple[str, str], ...] = ()
    overrides: tuple[str, ...] = field(default=(), compare=False)

    def folder_name(self) -> str:
        """The job's folder in the sweep: ``<section>-<arm>-<grid values>-s<seed>`` (stable when the
        table grows; characters other than letters, digits and ``_.=+-`` become ``_``)."""
        parts = [self.section, self.arm, *(value for _, value in self.cell), f"s{self.seed}"]
        return re.sub(r"[^A-Za-z0-9_.=+\-]", "_", "-".join(str(p) for p in parts))

    def command_overrides(self) -> list[str]:
        """The overrides the job is launched with (without the command line's own)."""
        return [
            *self.overrides,
            f"seed={self.seed}",
            f"++table.section={self.section}",
            f"++table.arm={self.arm}",
        ]


def plain(node: Any) -> Any:
    """A config node as plain Python containers (resolved)."""
    if isinstance(node, DictConfig) or OmegaConf.is_config(node):
        return OmegaConf.to_container(node, resolve=True)
    return node


def _override_list(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, Sequence):
        raise UserError(f"{where}: a list of overrides (key=value strings) is expected, got {value!r}")
    return [str(v) for v in value]


def grid_spec(grid: Any, where: str) -> dict[str, list[str]]:
    """``{key: [value, ...]}`` of a grid (values as override strings)."""
    if not isinstance(grid, Mapping):
        raise UserError(f"{where}: a mapping of override key -> list of values is expected, got {grid!r}")
    out = {}
    for key, values in grid.items():
        if isinstance(values, str) or not isinstance(values, Sequence) or not values:
            raise UserError(f"{where}.{key}: a non-empty list of values is expected, got {values!r}")
        out[str(key)] = [str(v) for v in values]
    return out


def arm_spec(name: str, spec: Any, where: str) -> dict:
    """``{"overrides": [...], "label": str, "grid": {key: [values]} or None}`` of one arm (a plain list of
    overrides is accepted; ``grid`` None: the section's)."""
    if not ARM_NAME.match(str(name)):
        raise UserError(f"{where}: arm name {name!r} may use letters, digits, '_', '.' and '-' only")
    if isinstance(spec, Mapping):
        grid = spec.get("grid")
        return {
            "overrides": _override_list(spec.get("overrides"), f"{where}.{name}.overrides"),
            "label": str(spec.get("label") or name),
            "grid": None if grid is None else grid_spec(grid, f"{where}.{name}.grid"),
        }
    return {"overrides": _override_list(spec, f"{where}.{name}"), "label": str(name), "grid": None}


def arm_grid(section: Mapping, arm: str) -> dict[str, list[str]]:
    """The grid crossed with ``arm`` (a section of :func:`sections`): its own, else the section's."""
    own = section["arms"][arm]["grid"]
    return section["grid"] if own is None else own


def sections(table: Mapping) -> dict[str, dict]:
    """``{section: {"overrides", "grid", "arms": {arm: {"overrides", "label"}}, "metrics", "label",
    "trivial"}}`` (a section's ``metrics`` and ``trivial`` default to the table's)."""
    raw = table.get("sections")
    if not raw:
        raise UserError("table.sections: a table needs at least one section with arms")
    out = {}
    for name, section in raw.items():
        if not ARM_NAME.match(str(name)):
            raise UserError(f"table.sections: section name {name!r} may use letters, digits, '_', '.', '-'")
        arms = section.get("arms") or {}
        if not arms:
            raise UserError(f"table.sections.{name}.arms: no arms (rows) given")
        out[str(name)] = {
            "overrides": _override_list(section.get("overrides"), f"table.sections.{name}.overrides"),
            "grid": grid_spec(section.get("grid") or {}, f"table.sections.{name}.grid"),
            "arms": {
                str(arm): arm_spec(str(arm), spec, f"table.sections.{name}.arms")
                for arm, spec in arms.items()
            },
            "metrics": list(section.get("metrics") or table.get("metrics") or []),
            "label": str(section.get("label") or name),
            "trivial": section.get("trivial") or table.get("trivial"),
        }
    return out


def grid_cells(grid: Mapping[str, Sequence[str]]) -> list[tuple[tuple[str, str], ...]]:
    """Every combination of the grid's values (one empty cell without a grid)."""
    keys = list(grid)
    return [tuple(zip(keys, values, strict=True)) for values in itertools.product(*(grid[k] for k in keys))]


def selected(select: Sequence[str] | None, section: str, arm: str) -> bool:
    """Whether ``table.select`` keeps this row (None/empty: every row)."""
    if not select:
        return True
    return any(s in (section, arm, f"{section}/{arm}") for s in select)


def expand(table: Mapping | DictConfig, seeds: Sequence[int] | None = None) -> list[TableJob]:
    """The table's jobs in launch order (see the module docstring); ``table.select`` keeps a part."""
    table = plain(table)
    seeds = list(seeds if seeds is not None else table.get("seeds") or [0])
    common = _override_list(table.get("overrides"), "table.overrides")
    jobs: list[TableJob] = []
    for section_name, section in sections(table).items():
        for arm_name, arm in section["arms"].items():
            for cell in grid_cells(arm_grid(section, arm_name)):
                overrides = [
                    *common,
                    *section["overrides"],
                    *(f"{k}={v}" for k, v in cell),
                    *arm["overrides"],
                ]
                for seed in seeds:
                    jobs.append(
                        TableJob(section_name, arm_name, int(seed), cell, tuple(with_data_choice(overrides)))
                    )
    first = set(table.get("first") or [])
    if first:
        head: dict[tuple[str, str], TableJob] = {}
        for job in jobs:  # the first job of each (section, first arm)
            if job.arm in first:
                head.setdefault((job.section, job.arm), job)
        jobs = list(head.values()) + [j for j in jobs if j not in head.values()]
    select = table.get("select")
    if isinstance(select, str):
        select = [select]
    kept = [job for job in jobs if selected(select, job.section, job.arm)]
    if not kept:
        raise UserError(f"table.select={select}: no section or arm of the table matches")
    return kept


def override_key(line: str) -> str:
    """The key an override sets (``+a.b=1`` -> ``a.b``; ``~x`` -> ``x``)."""
    return line.split("=", 1)[0].lstrip("+~")


def only_shapes_the_table(line: str) -> bool:
    """Whether an override only shapes which jobs a table runs (``table.select=``, ``table.seeds=``,
    ``table.records=``, edits of ``table.sections...``) and not what a job computes; a job's row,
    ``table.section`` / ``table.arm``, is part of what it computes."""
    key = override_key(line)
    return key.startswith("table.") and key not in ("table.section", "table.arm")


def merge_overrides(table_overrides: Sequence[str], command_line: Sequence[str]) -> list[str]:
    """The table's overrides, then the command line's; a command-line key replaces the table's."""
    given = {override_key(o) for o in command_line}
    return [o for o in table_overrides if override_key(o) not in given] + list(command_line)
