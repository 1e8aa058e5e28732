"""The results table of a table sweep (``python -m runner -m table=<paper>``), for :mod:`runner.report`.

``python -m runner.report <sweep dir> [--out experiments/<paper>]`` finds the table in the sweep's
``multirun.yaml`` (or a job's ``.hydra/config.yaml``) and writes ``report.md`` (and, with ``--out``,
``<out>/results.md``) that opens with the paper's claims checked on the runs (:mod:`runner.claims`),
then the trivial-baseline and ceiling checks, then one table per section (rows = arms, mean ± std over
seeds of the table's metrics) with its figure ``results_<section>.png`` (curves + final test metrics),
the failed / unfinished jobs, and last ``<out>/notes.md`` when there is one (protocol differences from
the paper, what the runs show).

With ``table.tune: {key: <grid key>, select: val/acc, mode: max}`` every arm is shown, and its claims
checked, at its own best value of ``key`` in each cell, chosen on ``select`` (a validation metric,
never test), e.g. the server step size of each Byrd-NAFL variant. An arm whose own grid lacks ``key``
(``grid: {}``, :func:`runner.tables.arm_grid`) is shown as it ran.
"""

from __future__ import annotations

import math
import shutil
import statistics
from collections import defaultdict
from pathlib import Path

from omegaconf import OmegaConf

from runner.claims import (
    DEFAULT_ALPHA,
    FAILS,
    HOLDS,
    NOT_SEPARABLE,
    check_claim,
    claim_line,
    parse_claim,
    trivial_lines,
)
from runner.table_archive import (
    archive_dir,
    is_archive,
    job_key,
    job_record,
    load_archived_table,
    pool,
    provenance_lines,
    sweep_provenance,
    write_records,
)
from runner.tables import arm_grid
from runner.tables import sections as table_sections


def load_table(sweep_dir: Path) -> dict | None:
    """The ``table`` node of a table sweep (plain containers) or of a table's ``runs/`` archive
    (:mod:`runner.table_archive`), or None for another sweep."""
    if is_archive(sweep_dir):
        return load_archived_table(sweep_dir)
    candidates = [sweep_dir / "multirun.yaml", *sorted(sweep_dir.glob("*/.hydra/config.yaml"))[:1]]
    for path in candidates:
        if path.is_file():
            node = OmegaConf.load(path).get("table")
            if node is not None and node.get("sections"):
                return OmegaConf.to_container(node, resolve=False)
    return None


def job_row(job: dict) -> tuple[str | None, str | None]:
    """(section, arm) of a job from its overrides (``++table.section=...``, ``++table.arm=...``)."""
    found = {}
    for line in job.get("overrides", ()):
        key, _, value = line.partition("=")
        found[key.lstrip("+~")] = value
    return found.get("table.section"), found.get("table.arm")


def job_cell(job: dict, grid_keys: list[str]) -> tuple[tuple[str, str], ...]:
    values = {}
    for line in job.get("overrides", ()):
        key, _, value = line.partition("=")
        values[key.lstrip("+~")] = value
    return tuple((k, values.get(k, "?")) for k in grid_keys)


def cell_name(cell: tuple[tuple[str, str], ...]) -> str:
    return " ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in cell)


# (section, cell, arm) whose tuning grid is not complete yet (filled by organise, listed by the report)
INCOMPLETE: list[str] = []
# {(section, cell): {arm: ({tuned value: [the selection metric of each seed]}, the value chosen)}}
# (filled by organise, shown under each section's table)
TUNING: dict[tuple[str, tuple], dict[str, tuple[dict[str, list[float]], str | None]]] = {}
# (section and cell, end of the grid, its value, arm) of each row whose best tuned value is the grid's
# largest or smallest (filled by organise, listed under the claims)
AT_EDGE: list[tuple[str, str, str, str]] = []


def organise(jobs: list[dict], table: dict) -> dict[str, dict[tuple, dict[str, list[dict]]]]:
    """``{section: {cell: {arm: [jobs]}}}`` in the table's order; with ``table.tune`` each arm keeps
    only the jobs at its best value (``job["tuned"]`` records it), and an arm that has not yet run every
    value of the tuned key in a cell is left out of that cell (listed in :data:`INCOMPLETE`)."""
    INCOMPLETE.clear()
    AT_EDGE.clear()
    TUNING.clear()
    spec = table_sections(table)
    tune = table.get("tune") or {}
    tuned_key = tune.get("key")
    out: dict[str, dict[tuple, dict[str, list[dict]]]] = {}
    for section, section_spec in spec.items():
        grids = {arm: arm_grid(section_spec, arm) for arm in section_spec["arms"]}
        cells: dict[tuple, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
        for job in jobs:
            job_section, arm = job_row(job)
            if job_section != section or arm not in section_spec["arms"]:
                continue
            cells[job_cell(job, [k for k in grids[arm] if k != tuned_key])][arm].append(job)
        if tuned_key:
            for cell, arms in cells.items():
                place = " ".join(filter(None, [section, cell_name(cell)]))
                for arm, members in list(arms.items()):
                    grid = grids[arm].get(tuned_key)
                    if not grid:  # an arm without the tuned key (its own grid): shown as it ran
                        continue
                    wanted = set(grid)
                    tried = {dict(job_cell(j, [tuned_key]))[tuned_key] for j in members}
                    if wanted - tried:  # its best value is not known yet: left out, listed
                        INCOMPLETE.append(f"{place} {arm}: {len(tried)} of {len(wanted)}")
                        del arms[arm]
                        continue
                    values = selection_values(members, tuned_key, tune)
                    arms[arm], best = pick_best(members, tuned_key, values, str(tune.get("mode", "max")))
                    TUNING.setdefault((section, cell), {})[arm] = (values, best)
                    if best is not None and (edge := grid_edge(best, grid)):
                        AT_EDGE.append((place, edge, best, arm))
        order = {arm: i for i, arm in enumerate(section_spec["arms"])}
        out[section] = {
            cell: dict(sorted(arms.items(), key=lambda kv: order[kv[0]])) for cell, arms in cells.items()
        }
    return out


def grid_edge(value: str, values: list[str]) -> str | None:
    """Whether ``value`` is an end of a numeric grid of 2 or more values ("the largest" / "the
    smallest"; a best value there may not be the best of a wider grid), else None."""
    try:
        numbers = sorted({float(v) for v in values})
        number = float(value)
    except ValueError:
        return None
    if len(numbers) < 2:
        return None
    return "the largest" if number == numbers[-1] else "the smallest" if number == numbers[0] else None


def selection_values(members: list[dict], key: str, tune: dict) -> dict[str, list[float]]:
    """``{value of key: [tune.select of each job run at it]}`` (finite values only)."""
    select = str(tune.get("select", "val/acc"))
    if select.startswith("test/"):
        raise ValueError(f"table.tune.select={select}: choose on a validation metric, never on test")
    out: dict[str, list[float]] = defaultdict(list)
    for job in members:
        value = job["metrics"].get(select, math.nan)
        if isinstance(value, int | float) and math.isfinite(value):
            out[dict(job_cell(job, [key]))[key]].append(float(value))
    return dict(out)


def pick_best(
    members: list[dict], key: str, values: dict[str, list[float]], mode: str
) -> tuple[list[dict], str | None]:
    """(the jobs at the value of ``key`` whose mean selection metric in ``values``
    (:func:`selection_values`) is best, that value); ``mode``: max | min (``tune.mode``)."""
    scores = {value: statistics.fmean(v) for value, v in values.items()}
    if not scores:
        return [], None
    pick = max if mode == "max" else min
    best = pick(scores, key=scores.__getitem__)
    chosen = [job for job in members if dict(job_cell(job, [key]))[key] == best]
    for job in chosen:
        job["tuned"] = f"{key.rsplit('.', 1)[-1]}={best}"
    return chosen, best


def finals_of(arms: dict[str, list[dict]]):
    def finals(arm: str, metric: str) -> list[float]:
        return [
            j["metrics"][metric]
            for j in arms.get(arm, [])
            if isinstance(j["metrics"].get(metric), int | float) and math.isfinite(j["metrics"][metric])
        ]

    return finals


def curves_of(arms: dict[str, list[dict]]):
    from runner.report import read_curves

    cache: dict[Path, dict] = {}

    def curves(arm: str, metric: str) -> list[dict[int, float]]:
        out = []
        for job in arms.get(arm, []):
            if job["dir"] not in cache:
                cache[job["dir"]] = read_curves(job["curves"])
            out.append(cache[job["dir"]].get(metric, {}))
        return out

    return curves


def claims_section(table: dict, organised: dict) -> list[str]:
    alpha = float(table.get("alpha", DEFAULT_ALPHA))
    claims = [parse_claim(c) for c in table.get("claims") or []]
    lines = [
        "## Claims",
        "",
        f"Each claim on the seeds' values: **holds** = the difference is in the claimed direction and Welch's "
        f"two-sided t-test (unequal variances) gives p < {alpha:g}; **does not hold** = significant in the "
        f"other direction; **not separable** = p ≥ {alpha:g} (within the seeds' noise) or fewer than 2 seeds. "
        "Two metrics of the same runs (`arm[a] > arm[b]`) are compared with the paired t-test over seeds.",
        "",
    ]
    multi = len(organised) > 1
    details: list[str] = []
    for claim in claims:
        counts: dict[str, int] = defaultdict(int)
        for section, cells in organised.items():
            if claim.sections and section not in claim.sections:
                continue
            for cell, arms in cells.items():
                if claim.left not in arms and claim.right not in arms:
                    continue
                where = " ".join(filter(None, [section if multi else "", cell_name(cell)]))
                verdict = check_claim(claim, finals_of(arms), curves_of(arms), arms=list(arms), alpha=alpha)
                counts[verdict.verdict if verdict else "not evaluated"] += 1
                details.append(claim_line(claim, verdict, where))
        if sum(counts.values()) > 1:  # one summary line per claim checked in several sections / cells
            order = (HOLDS, FAILS, NOT_SEPARABLE, "not evaluated")
            summary = ", ".join(f"{name} in {counts[name]}" for name in order if counts[name])
            lines.append(f"- `{claim.text}`: {summary} of {sum(counts.values())} sections / cells")
    if details and len(details) > len(claims):
        lines += ["", "Per section and cell:", ""]
    lines += details
    if not claims:
        lines.append("(the table states no claims)")
    spec = table_sections(table)
    if any(spec[section]["trivial"] for section in organised):
        lines += ["", "## Trivial baseline and ceiling", ""]
        for section, cells in organised.items():
            for cell, arms in cells.items():
                where = " ".join(filter(None, [section if multi else "", cell_name(cell)]))
                lines += trivial_lines(spec[section]["trivial"], finals_of(arms), list(arms), alpha, where)
    return lines


def metric_columns(section_spec: dict, members: list[dict]) -> list[str]:
    names = {n for job in members for n in job["metrics"] if not n.endswith("_step")}
    wanted = section_spec.get("metrics") or []
    if wanted:
        from fnmatch import fnmatchcase

        return [n for pattern in wanted for n in sorted(names) if fnmatchcase(n, pattern)]
    return sorted(n for n in names if n.startswith(("test/", "val/")))


def section_table(section_spec: dict, cells: dict) -> list[str]:
    from runner.report import mean_std

    members = [j for arms in cells.values() for jobs in arms.values() for j in jobs]
    columns = list(dict.fromkeys(metric_columns(section_spec, members)))
    tuned = any("tuned" in j for j in members)
    if len(cells) == 1 and len(next(iter(cells.values()))) == 1 and not tuned:  # one row: metrics as rows
        ((arm, jobs),) = next(iter(cells.values())).items()
        seeds = ",".join(str(j["seed"]) for j in sorted(jobs, key=lambda j: j["seed"] or 0))
        lines = [f"| metric | {section_spec['arms'][arm]['label']} (seeds {seeds}) |", "|---|---|"]
        for name in columns:
            values = [j["metrics"][name] for j in jobs if isinstance(j["metrics"].get(name), int | float)]
            values = [v for v in values if math.isfinite(v)]
            lines.append(f"| {name} | {mean_std(values) if values else '–'} |")
        return lines
    header = ["arm", *(["cell"] if any(cells) else []), *(["tuned"] if tuned else []), "seeds", *columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for cell, arms in cells.items():
        for arm, jobs in arms.items():
            row = [section_spec["arms"][arm]["label"]]
            if any(cells):
                row.append(cell_name(cell))
            if tuned:
                row.append(next((j["tuned"] for j in jobs if "tuned" in j), "–"))
            row.append(",".join(str(j["seed"]) for j in sorted(jobs, key=lambda j: j["seed"] or 0)))
            for name in columns:
                values = [
                    j["metrics"][name]
                    for j in jobs
                    if isinstance(j["metrics"].get(name), int | float) and math.isfinite(j["metrics"][name])
                ]
                row.append(mean_std(values) if values else "–")
            lines.append("| " + " | ".join(row) + " |")
    return lines


def metrics_figure(jobs: list[dict], names: list[str], out_file: Path, title: str) -> bool:
    """The metrics of one arm as horizontal bars (mean, the seeds' std, the value written), one panel per
    last name part (``test/<decoder>/induced_acc`` -> panel ``induced_acc``, a bar per decoder)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels: dict[str, list[str]] = defaultdict(list)
    for name in names:
        panels[name.rsplit("/", 1)[-1]].append(name)
    panels = {k: v for k, v in panels.items() if any(finals_of({"a": jobs})("a", n) for n in v)}
    if not panels:
        return False
    height = max(len(v) for v in panels.values())
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 0.9 + 0.32 * height), squeeze=False)
    for ax, (panel, members) in zip(axes[0], panels.items(), strict=True):
        values = [finals_of({"a": jobs})("a", n) for n in members]
        means = [statistics.fmean(v) if v else math.nan for v in values]
        stds = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values]
        ax.barh(range(len(members)), means, xerr=stds, color="tab:blue", alpha=0.8, capsize=2)
        for y, (m, sd) in enumerate(zip(means, stds, strict=True)):
            ax.text(m + sd, y, f" {m:.3f}", va="center", fontsize=7)
        labels = [n.removeprefix("test/").removesuffix("/" + panel) for n in members]
        ax.set_yticks(range(len(members)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set_title(f"{panel} (mean ± std over seeds)", fontsize=9)
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out_file, dpi=100)
    plt.close(fig)
    return True


def cells_figure(cells: dict, section_spec: dict, metric: str, out_file: Path, final: bool = False) -> bool:
    """One panel per grid cell with ``metric``'s curve (mean over seeds) of every arm, or with ``final``
    its final value as a bar per arm (mean, the seeds' std as error bar, the value written); False if
    there is nothing to draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from runner.report import read_curves

    arms = list(section_spec["arms"])
    colours = {arm: plt.get_cmap("tab10")(i % 10) for i, arm in enumerate(arms)}
    cols = min(3, len(cells))
    rows = math.ceil(len(cells) / cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(4.2 * cols, 2.9 * rows), squeeze=False, sharey=not final, sharex=final
    )
    drawn = False
    for ax, (cell, members) in zip(axes.flat, cells.items(), strict=False):
        if final:
            present = [arm for arm in arms if finals_of(members)(arm, metric)]
            values = [finals_of(members)(arm, metric) for arm in present]
            means = [statistics.fmean(v) for v in values]
            stds = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values]
            ax.barh(range(len(present)), means, xerr=stds, color=[colours[a] for a in present], capsize=2)
            for y, (m, sd) in enumerate(zip(means, stds, strict=True)):
                ax.text(m + sd, y, f" {m:.3f}", va="center", fontsize=7)
            ax.set_yticks(range(len(present)), [""] * len(present))
            ax.invert_yaxis()
            ax.set_xlabel(f"{metric} (final, mean ± std)", fontsize=7)
            drawn = drawn or bool(present)
        else:
            for arm, jobs in members.items():
                series = [pd.Series(c) for job in jobs if (c := read_curves(job["curves"]).get(metric))]
                if series:
                    mean = pd.concat(series, axis=1).mean(axis=1).sort_index()
                    ax.plot(mean.index, mean.values, marker="o", markersize=2, color=colours[arm])
                    drawn = True
            ax.set_xlabel("epoch (one evaluation each)", fontsize=7)
        tuned = sorted({j["tuned"] for jobs in members.values() for j in jobs if "tuned" in j})
        ax.set_title(cell_name(cell) + (" (each at its best)" if tuned else ""), fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(cells) :]:
        fig.delaxes(ax)
    if not drawn:
        plt.close(fig)
        return False
    if not final:
        fig.supylabel(metric)
    handles = [plt.Line2D([], [], color=colours[a], linewidth=2) for a in arms]
    labels = [section_spec["arms"][a]["label"] for a in arms]
    fig.legend(handles, labels, loc="lower center", ncol=min(3, len(arms)), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, (0.05 + 0.03 * math.ceil(len(arms) / 3)) / rows, 1, 1))
    fig.savefig(out_file, dpi=100)
    plt.close(fig)
    return True


def wall_minutes(sweep_dir: Path) -> float:
    """Wall minutes from the first job's start to the last metrics.json (the jobs' own run times are
    summed per sweep from their records, :func:`runner.table_archive.provenance_lines`)."""
    starts = [p.stat().st_mtime for p in sweep_dir.glob("*/.hydra/config.yaml")]
    ends = [p.stat().st_mtime for p in sweep_dir.glob("*/metrics.json")]
    return (max(ends) - min(starts)) / 60 if starts and ends else math.nan


def as_typed(path: Path) -> str:
    """``path`` relative to the working folder when it is inside it (as a user would type it)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def command_of(sweep_dir: Path) -> str:
    path = sweep_dir / "multirun.yaml"
    if path.is_file():
        task = OmegaConf.load(path).hydra.overrides.get("task") or []
        return "python -m runner -m " + " ".join(str(o) for o in task)
    return "python -m runner -m table=..."


def row_identifier(spec: dict):
    """``identify(job) -> (section, arm, cell over every grid key) | None`` for the table ``spec``."""

    def identify(job: dict):
        section, arm = job_row(job)
        if section not in spec or arm not in spec[section]["arms"]:
            return None
        return section, arm, job_cell(job, list(arm_grid(spec[section], arm)))

    return identify


def mark_provenance(jobs: list[dict], sweep_dir: Path) -> None:
    """Give each job of the sweep the sweep's provenance (its commit and wall time come from load_jobs)."""
    wall = wall_minutes(sweep_dir)
    launcher = {}
    if (sweep_dir / "multirun.yaml").is_file():
        launcher = OmegaConf.to_container(OmegaConf.load(sweep_dir / "multirun.yaml").hydra.launcher) or {}
    provenance = sweep_provenance(as_typed(sweep_dir), command_of(sweep_dir), wall, launcher.get("n_jobs"))
    for job in jobs:
        job["sweep"] = provenance


def with_columns(table: dict, columns: list[str]) -> dict:
    """``table`` showing the metric ``columns`` (glob patterns) in every section instead of its own."""
    sections = {name: {**section, "metrics": list(columns)} for name, section in table["sections"].items()}
    return {**table, "metrics": list(columns), "sections": sections}


def tuning_table(section: str, section_spec: dict, table: dict) -> list[str]:
    """The selection metric's mean per tuned value for each row of ``section`` (:data:`TUNING`), the
    value each row was chosen at in bold: the evidence behind the table's ``tuned`` column."""
    from runner.report import mean_std

    tune = table.get("tune") or {}
    key = str(tune.get("key"))
    cells = {cell: arms for (where, cell), arms in TUNING.items() if where == section}
    if not cells:
        return []
    grids = [arm_grid(section_spec, arm).get(key, []) for arm in section_spec["arms"]]
    values = list(dict.fromkeys(str(v) for grid in grids for v in grid))
    with_cells = any(cells)
    lines = [
        "",
        f"Validation `{tune.get('select', 'val/acc')}` per `{key}` (mean ± std over seeds; each row is "
        "shown at the value in bold):",
        "",
        "| arm | " + ("cell | " if with_cells else "") + " | ".join(values) + " |",
        "|---|" + ("---|" if with_cells else "") + "---|" * len(values),
    ]
    for cell, arms in cells.items():
        for arm, (by_value, best) in sorted(
            arms.items(), key=lambda kv: list(section_spec["arms"]).index(kv[0])
        ):
            row = [section_spec["arms"][arm]["label"], *([cell_name(cell)] if with_cells else [])]
            for value in values:
                text = mean_std(by_value[value]) if by_value.get(value) else "–"
                row.append(f"**{text}**" if value == best else text)
            lines.append("| " + " | ".join(row) + " |")
    return lines


def edge_lines(table: dict) -> list[str]:
    """The rows tuned at an end of their grid (:data:`AT_EDGE`), as a warning under the claims."""
    if not AT_EDGE:
        return []
    tune = table.get("tune") or {}
    grouped: dict[str, dict[tuple[str, str], list[str]]] = defaultdict(lambda: defaultdict(list))
    for where, edge, value, arm in AT_EDGE:
        grouped[where][(edge, value)].append(arm)
    return [
        "",
        f"**Tuned at an end of the grid.** These rows' best `{tune.get('key')}` on "
        f"`{tune.get('select', 'val/acc')}` is the grid's largest or smallest value, so a wider grid "
        f"could move them (and the claims they enter): {len(AT_EDGE)} row(s).",
        "",
        *[
            f"- {where}: "
            + "; ".join(f"{edge} ({value}): {', '.join(arms)}" for (edge, value), arms in ends.items())
            for where, ends in grouped.items()
        ],
    ]


def build_table_report(
    sweep_dir: Path,
    jobs: list[dict],
    table: dict,
    failures,
    unfinished,
    out: Path | None,
    columns: list[str] | None = None,
):
    """Write report.md (+ ``results_<section>.png``) into the sweep folder and, with ``out``, the same as
    ``<out>/results.md`` (+ PNGs); return the markdown. With ``out`` the sweep's jobs are pooled with
    the runs archived in ``<out>/runs`` and archived there (:mod:`runner.table_archive`); a ``runs/``
    folder as ``sweep_dir`` rebuilds the table from its records alone. ``columns`` (the report's
    ``--metrics``): glob patterns of the metric columns shown in place of the table's ``metrics``; the
    records keep every metric."""
    from runner.report import plot_curves, read_curves

    spec = table_sections(table)
    identify = row_identifier(spec)
    rebuilding = is_archive(sweep_dir)
    outdated: dict[str, int] = {}
    if rebuilding:  # the records of sweep_dir are the jobs (also when --out names another table folder)
        jobs, outdated, _ = pool([], table, sweep_dir, identify)
    else:
        mark_provenance(jobs, sweep_dir)
    archive = archive_dir(out) if out is not None else (sweep_dir if rebuilding else None)
    if archive is not None and not (rebuilding and out is None):
        fresh = list(jobs)
        jobs, more_outdated, records = pool(jobs, table, archive, identify)
        outdated = {**more_outdated, **outdated}
        if out is not None:
            extra = {str(table.get("curve") or ""), str((table.get("tune") or {}).get("select") or "")}
            for job in fresh:
                if (row := identify(job)) is not None:
                    records[row[0]][job_key(*row, job.get("seed"))] = job_record(
                        job, *row, read_curves(job["curves"]), job.get("sweep") or {}, extra
                    )
            write_records(archive, table, records)
    if columns:
        table = with_columns(table, columns)
        spec = table_sections(table)
    organised = organise(jobs, table)
    figures_dir = sweep_dir
    if rebuilding:  # no figures or report.md among the records: straight into --out (or next to runs/)
        figures_dir = out if out is not None else sweep_dir.parent
        figures_dir.mkdir(parents=True, exist_ok=True)
    command = f"python -m runner.report {as_typed(sweep_dir)}{f' --out {as_typed(out)}' if out else ''}"
    parts = [
        f"# {table.get('title') or table.get('name')}",
        "",
        f"Produced by `{command}` from {len(jobs)} finished job(s) of the sweep(s) below (every job runs "
        "`python -m runner`'s normal flow"
        + (f"; their records are kept in `{as_typed(archive)}`" if archive is not None else "")
        + "). Values: mean ± std over seeds.",
        "",
        *provenance_lines(jobs),
        *(
            [
                "",
                "Archived runs left out because the table has changed since they ran (their overrides no "
                "longer hold the table's): "
                + ", ".join(f"{section} {count}" for section, count in sorted(outdated.items())),
            ]
            if outdated
            else []
        ),
        "",
        *claims_section(table, organised),
        *edge_lines(table),
    ]
    figures: list[Path] = []
    for section, cells in organised.items():
        section_spec = spec[section]
        parts += ["", f"## {section_spec['label']}", ""]
        if section_spec["overrides"]:
            parts += [f"Overrides: `{' '.join(section_spec['overrides'])}`", ""]
        if not cells:
            parts.append("(no finished job)")
            continue
        parts += section_table(section_spec, cells)
        parts += tuning_table(section, section_spec, table)
        if len(cells) == 1 and len(next(iter(cells.values()))) == 1:  # one arm: its metrics as bars
            ((arm, jobs),) = next(iter(cells.values())).items()
            figure = figures_dir / f"results_{section}.png"
            if metrics_figure(jobs, metric_columns(section_spec, jobs), figure, section_spec["label"]):
                figures.append(figure)
                parts += ["", f"![{section_spec['label']}]({figure.name})"]
            continue
        plotted = []
        members = [j for arms in cells.values() for jobs in arms.values() for j in jobs]
        shown = set(metric_columns(section_spec, members))
        for cell, arms in cells.items():
            for arm, members in arms.items():
                for job in members:
                    label = section_spec["arms"][arm]["label"]
                    metrics = {k: v for k, v in job["metrics"].items() if k in shown}
                    plotted.append({**job, "metrics": metrics, "group": f"{label} {cell_name(cell)}".strip()})
        if len(cells) > 1:  # a grid: one panel per cell, a curve per arm
            figure = figures_dir / f"results_{section}_cells.png"
            metric = table.get("curve") or (table.get("tune") or {}).get("select") or "val/acc"
            if cells_figure(cells, section_spec, str(metric), figure):
                figures.append(figure)
                parts += ["", f"![{section_spec['label']}: {metric} per cell]({figure.name})"]
            headline = next(iter(metric_columns(section_spec, members)), None)
            figure = figures_dir / f"results_{section}.png"
            if headline and cells_figure(cells, section_spec, headline, figure, final=True):
                figures.append(figure)
                parts += ["", f"![{section_spec['label']}: {headline} per cell]({figure.name})"]
            continue
        figure = figures_dir / f"results_{section}.png"
        if plotted and plot_curves(plotted, figure, title=section_spec["label"]):
            figures.append(figure)
            parts += ["", f"![{section_spec['label']}]({figure.name})"]
    if INCOMPLETE:
        key = (table.get("tune") or {}).get("key")
        parts += [
            "",
            f"Left out until every value of `{key}` has a finished run (values run so far of the grid's):",
            *[f"- {entry}" for entry in INCOMPLETE],
        ]
    if failures:
        parts += ["", f"Failed jobs ({len(failures)}):", *[f"- job {n}: {e}" for n, e in failures]]
    if unfinished:
        parts += ["", f"Jobs that did not finish ({len(unfinished)}):", *[f"- job {n}" for n in unfinished]]
    notes = (out / "notes.md") if out else None
    if notes is not None and notes.is_file():
        parts += ["", notes.read_text().strip()]
    markdown = "\n".join(parts) + "\n"
    (figures_dir / "report.md" if not rebuilding else (out or figures_dir) / "results.md").write_text(
        markdown
    )
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.md").write_text(markdown)
        for figure in figures:
            if figure.resolve() != (out / figure.name).resolve():
                shutil.copyfile(figure, out / figure.name)
    return markdown
