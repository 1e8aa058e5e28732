"""A table's runs kept next to its results: ``experiments/<paper>/runs/<section>.jsonl``.

Sweep folders live under ``logs/`` and are not versioned, so without a record of its runs a table could
only be written by one sweep on one machine: a paper whose sections take longer than a session (CO-PFL,
FedPall on a 2-core CPU) could never be shown whole, and nobody could rebuild ``results.md`` later.
``python -m runner.report <sweep> --out experiments/<paper>`` therefore

* writes one JSON line per finished job of the sweep into ``<out>/runs/<section>.jsonl`` (its overrides,
  seed, final metrics, the epoch curves the figures use, its wall time and git commit, and which sweep
  command ran it), replacing the record of the same (section, arm, grid cell, seed), and the table
  node into ``<out>/runs/table.yaml``;
* pools the sweep's jobs with the records of the other sections and seeds, so a section rerun replaces
  that section and leaves the others as they were, and the report lists every sweep behind the table.

An archived record is used only while it still matches the table: its overrides must hold every
override the current table gives that (section, arm, cell, seed) job. A record from before a protocol
change (another twin size, a changed arm) is left out and counted in the report, never mixed in.
``python -m runner.report experiments/<paper>/runs --out experiments/<paper>`` rebuilds the table from
the records alone, and ``python -m runner -m table=<paper> table.records=experiments/<paper>`` runs only
the jobs that have no record there yet (:func:`recorded_runs`), so a table grows across sessions.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

import yaml

from runner.tables import expand, only_shapes_the_table, override_key

TABLE_FILE = "table.yaml"
CURVE_PREFIXES = ("val/", "train/loss", "train/acc")
SIGNIFICANT_DIGITS = 6


# table keys that only chose what one sweep ran, left out of the archived table
SWEEP_ONLY_KEYS = ("select", "records")


def archive_dir(out: Path) -> Path:
    return Path(out) / "runs"


def is_archive(folder: Path) -> bool:
    """Whether ``folder`` is a table's ``runs/`` folder (a ``table.yaml`` and section records)."""
    return (Path(folder) / TABLE_FILE).is_file()


def records_folder(path: Path) -> Path:
    """The ``runs/`` folder that ``path`` names: the folder itself or the ``--out`` folder holding it."""
    path = Path(path)
    return path if is_archive(path) or not is_archive(archive_dir(path)) else archive_dir(path)


def run_identity(key: str, overrides) -> tuple[str, frozenset[str]]:
    """What a job computes, comparable between a record and a job the sweeper is about to launch: its
    key (``section-arm-cell-s<seed>``, the sweeper's folder name) and its overrides without the seed
    (the key holds it), Hydra's and the paths' settings (a record leaves them out:
    :data:`runner.report.IGNORED_OVERRIDE_PREFIXES`) and those that only shape the table
    (:func:`runner.tables.only_shapes_the_table`)."""
    from runner.report import IGNORED_OVERRIDE_PREFIXES

    return key, frozenset(
        line.lstrip("+~")
        for line in overrides
        if not line.lstrip("+~").startswith(IGNORED_OVERRIDE_PREFIXES) and not only_shapes_the_table(line)
    )


def recorded_runs(path: Path) -> set[tuple[str, frozenset[str]]]:
    """:func:`run_identity` of every record in the ``runs/`` folder ``path`` names (empty when none)."""
    return {
        run_identity(key, record["overrides"])
        for by_key in read_records(records_folder(path)).values()
        for key, record in by_key.items()
    }


def load_archived_table(folder: Path) -> dict:
    return yaml.safe_load((Path(folder) / TABLE_FILE).read_text())


def _rounded(value: float) -> float:
    return float(f"{value:.{SIGNIFICANT_DIGITS}g}") if math.isfinite(value) else value


def kept_curves(curves: dict[str, dict[int, float]], extra: set[str]) -> dict[str, dict[str, float]]:
    """The epoch curves a table figure can draw (validation metrics, training loss / accuracy and the
    table's ``curve`` metric), values rounded to 6 significant digits."""
    return {
        name: {str(epoch): _rounded(value) for epoch, value in sorted(points.items())}
        for name, points in sorted(curves.items())
        if name.startswith(CURVE_PREFIXES) or name in extra
    }


def job_key(section: str, arm: str, cell: tuple[tuple[str, str], ...], seed) -> str:
    """A record's identity in the table: the sweeper's folder name of the job (section-arm-cell-s<seed>)."""
    return "-".join([section, arm, *(value for _, value in cell), f"s{seed}"])


def expected_overrides(table: dict) -> dict[tuple[str, str, tuple], set[str]]:
    """``{(section, arm, cell): overrides}``: what the table gives each job today, seed left out."""
    whole = {**table, "select": None, "first": []}
    return {
        (job.section, job.arm, job.cell): {o for o in job.overrides if override_key(o) != "seed"}
        for job in expand(whole, seeds=[0])
    }


def sweep_provenance(sweep_dir: Path, command: str, wall: float, n_jobs) -> dict:
    """What a record says about the sweep that ran it (listed at the top of the report)."""
    return {
        "command": command,
        "dir": str(sweep_dir),
        "wall_min": round(wall, 1) if math.isfinite(wall) else None,
        "n_jobs": n_jobs,
        "reported": datetime.now(UTC).strftime("%Y-%m-%d"),
    }


def job_record(
    job: dict, section: str, arm: str, cell, curves: dict, provenance: dict, extra: set[str]
) -> dict:
    return {
        "key": job_key(section, arm, cell, job.get("seed")),
        "overrides": list(job["overrides"]),
        "seed": job.get("seed"),
        "metrics": {k: _rounded(float(v)) for k, v in job["metrics"].items() if isinstance(v, int | float)},
        "curves": kept_curves(curves, extra),
        "wall_time_s": job.get("wall_time_s"),
        "git_commit": job.get("git_commit"),
        "sweep": provenance,
    }


def read_records(folder: Path) -> dict[str, dict[str, dict]]:
    """``{section: {key: record}}`` of a ``runs/`` folder (empty when there is none)."""
    out: dict[str, dict[str, dict]] = {}
    for path in sorted(Path(folder).glob("*.jsonl")):
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        out[path.stem] = {r["key"]: r for r in records}
    return out


def write_records(folder: Path, table: dict, records: dict[str, dict[str, dict]]) -> None:
    """The table (without the keys that only chose what one sweep ran: ``select``, ``records``) and one
    ``<section>.jsonl`` of records per section."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    table = {key: value for key, value in table.items() if key not in SWEEP_ONLY_KEYS}
    (folder / TABLE_FILE).write_text(yaml.safe_dump(table, sort_keys=False, allow_unicode=True))
    for section, by_key in records.items():
        lines = [json.dumps(by_key[key]) for key in sorted(by_key)]
        (folder / f"{section}.jsonl").write_text("\n".join(lines) + "\n")


def record_as_job(record: dict, origin: Path) -> dict:
    """An archived record in the form :func:`runner.report.load_jobs` gives a job folder."""
    return {
        "dir": Path(origin) / f"{record['key']}",
        "group": " ".join(record["overrides"]) or "(no overrides)",
        "overrides": tuple(record["overrides"]),
        "seed": record.get("seed"),
        "metrics": dict(record["metrics"]),
        "curves": {name: {int(e): v for e, v in points.items()} for name, points in record["curves"].items()},
        "sweep": record.get("sweep") or {},
        "git_commit": record.get("git_commit"),
        "wall_time_s": record.get("wall_time_s"),
    }


def matches_table(record: dict, section: str, arm: str, cell, expected: dict) -> bool:
    wanted = expected.get((section, arm, cell))
    return wanted is not None and wanted <= set(record["overrides"])


def pool(
    jobs: list[dict], table: dict, folder: Path, identify
) -> tuple[list[dict], dict[str, int], dict[str, dict[str, dict]]]:
    """The sweep's ``jobs`` plus the archived records in ``folder`` that the sweep does not replace and
    that still match the table. ``identify(job) -> (section, arm, cell) | None``. Returns (pooled jobs,
    ``{section: records left out as outdated}``, the archive's records with the sweep's jobs merged in,
    keyed for :func:`write_records`); the sweep's jobs carry no record yet (the caller adds them)."""
    archived = read_records(folder)
    expected = expected_overrides(table)
    fresh = set()
    for job in jobs:
        row = identify(job)
        if row is not None:
            fresh.add(job_key(*row, job.get("seed")))
    pooled = list(jobs)
    outdated: dict[str, int] = defaultdict(int)
    kept: dict[str, dict[str, dict]] = defaultdict(dict)
    for section, by_key in archived.items():
        for key, record in by_key.items():
            if key in fresh:
                continue
            job = record_as_job(record, folder / f"{section}.jsonl")
            row = identify(job)
            if row is None or not matches_table(record, *row, expected):
                outdated[section] += 1
                continue
            kept[section][key] = record
            pooled.append(job)
    return pooled, dict(outdated), kept


def short_commit(commit: str) -> str:
    return commit[:10] + ("+dirty" if commit.endswith("+dirty") else "")


def provenance_lines(jobs: list[dict]) -> list[str]:
    """One line per sweep behind the pooled jobs: its command, folder, sections, jobs, times, commits."""
    by_sweep: dict[tuple, list[dict]] = defaultdict(list)
    for job in jobs:
        sweep = job.get("sweep") or {}
        by_sweep[(sweep.get("command"), sweep.get("dir"))].append(job)
    lines = []
    for (command, folder), members in by_sweep.items():
        sweep = members[0].get("sweep") or {}
        sections = sorted(
            {o.split("=", 1)[1] for j in members for o in j["overrides"] if o.startswith("++table.section=")}
        )
        commits = sorted({short_commit(str(j["git_commit"])) for j in members if j.get("git_commit")})
        wall = sweep.get("wall_min")
        own = sum(float(j.get("wall_time_s") or 0.0) for j in members) / 60
        times = (
            f"the sweep took {wall} min wall"
            + (f" with {sweep['n_jobs']} job(s) at a time" if sweep.get("n_jobs") else "")
            if wall is not None
            else "wall time unknown"
        )
        lines.append(
            f"- `{command or 'python -m runner -m table=...'}` (sweep `{folder}`, reported {sweep.get('reported', '?')}): "
            f"{len(members)} job(s) of section(s) {', '.join(sections) or '?'}; {times}, the jobs' own run times "
            f"sum to {own:.1f} min; commit {', '.join(commits) or 'not recorded'}"
        )
    return lines
