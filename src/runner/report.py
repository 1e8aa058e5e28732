"""``python -m runner.report <multirun_dir>``: one table and one figure for a sweep.

Reads every job folder of a Hydra multirun (``<dir>/<job>/metrics.json`` and
``<dir>/<job>/.hydra/overrides.yaml``), groups jobs by their overrides other than ``seed``, and
writes next to the runs:

* ``report.md``: a markdown table, mean ± std over the seeds of each group for every final metric
  (std is the sample standard deviation; "–" for a single seed), plus the failed jobs;
* ``report.png``: the epoch-level curves of the validation metrics and the training loss (mean over
  seeds per group) and the final test metrics as bars (mean, with the seeds' std as error bars and the
  value written on each bar); one colour per group, one legend.

Curves are read from whichever logger the jobs used: the CSV logger (``csv/metrics.csv``),
TensorBoard (``tensorboard/**/events.out.tfevents.*``) or W&B offline run folders
(``wandb/offline-run-*``, read by :mod:`runner.wandb_offline`).

The table is also printed.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import yaml

from runner.hydra_callbacks import FAILURE_FILE, failed_jobs

IGNORED_OVERRIDE_PREFIXES = ("seed=", "hydra.", "paths.")


def load_jobs(sweep_dir: Path) -> list[dict]:
    """One record per job folder that has a metrics.json: its group key, seed, metrics and curves file."""
    jobs = []
    for job_dir in sorted(p for p in sweep_dir.iterdir() if p.is_dir()):
        metrics_file = job_dir / "metrics.json"
        if not metrics_file.is_file():
            continue
        payload = json.loads(metrics_file.read_text())
        overrides_file = job_dir / ".hydra" / "overrides.yaml"
        overrides = (
            yaml.safe_load(overrides_file.read_text())
            if overrides_file.is_file()
            else payload.get("overrides", [])
        )
        group = tuple(o for o in overrides or [] if not o.lstrip("+~").startswith(IGNORED_OVERRIDE_PREFIXES))
        jobs.append(
            {
                "dir": job_dir,
                "group": " ".join(group) or "(no overrides)",
                "overrides": group,
                "seed": payload.get("seed"),
                "metrics": {k: v for k, v in payload.get("metrics", {}).items() if v is not None},
                "curves": job_dir,
                "wall_time_s": payload.get("wall_time_s"),
                "git_commit": payload.get("git_commit"),
            }
        )
    return jobs


def factor_out_common_overrides(jobs: list[dict]) -> list[str]:
    """Overrides every job shares (the sweep's fixed settings) are taken out of the group names, which
    keep only what differs between groups (the table's rows and the figure's legend stay readable);
    returns the shared ones, in command-line order."""
    if len(jobs) < 2:
        return []
    shared = set(jobs[0].get("overrides", ()))
    for job in jobs[1:]:
        shared &= set(job.get("overrides", ()))
    for job in jobs:
        if "overrides" in job:
            job["group"] = " ".join(o for o in job["overrides"] if o not in shared) or "(all jobs)"
    return [o for o in jobs[0].get("overrides", ()) if o in shared]


def mean_std(values: list[float]) -> str:
    """ "m ± s" with the sample std over seeds ("m ± –" for one value)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.4f} ± –"
    return f"{mean:.4f} ± {statistics.stdev(values):.4f}"


def summary_table(jobs: list[dict]) -> str:
    """Markdown table: one row per group, one column per metric (mean ± std over seeds)."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for job in jobs:
        groups[job["group"]].append(job)
    all_names = {name for job in jobs for name in job["metrics"] if not name.endswith("_step")}
    # the evaluation metrics when there are any (train-time values and learning rates add clutter)
    metric_names = sorted(n for n in all_names if n.startswith(("test/", "val/"))) or sorted(all_names)
    header = ["group", "seeds", *metric_names]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for group, members in sorted(groups.items()):
        seeds = ",".join(str(m["seed"]) for m in members)
        cells = [group, seeds]
        for name in metric_names:
            values = [
                m["metrics"][name]
                for m in members
                if name in m["metrics"] and math.isfinite(m["metrics"][name])
            ]
            cells.append(mean_std(values) if values else "–")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---- curves from any logger ----------------------------------------------------------------------
# logged keys that are bookkeeping, not metrics
NON_METRIC_KEYS = ("epoch", "step", "trainer/global_step", "global_step")
MAX_CURVE_PANELS = 6
MAX_TEST_PANELS = 6


def csv_scalars(job_dir: Path):
    """The CSV logger's ``metrics.csv`` of a job (None when absent)."""
    import pandas as pd

    files = sorted(Path(job_dir).glob("csv/**/metrics.csv"))
    return pd.read_csv(files[0]) if files else None


def tensorboard_scalars(job_dir: Path):
    """Every scalar of a job's TensorBoard event files, one row per step (``epoch`` from Lightning's
    ``epoch`` scalar at that step)."""
    import pandas as pd

    files = sorted(Path(job_dir).glob("tensorboard/**/events.out.tfevents.*"))
    if not files:
        return None
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    rows: dict[int, dict[str, float]] = defaultdict(dict)
    for events in files:
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        for tag in accumulator.Tags().get("scalars", []):
            for event in accumulator.Scalars(tag):
                rows[event.step][tag] = event.value
    if not rows:
        return None
    return pd.DataFrame([{"step": step, **values} for step, values in sorted(rows.items())])


def wandb_scalars(job_dir: Path):
    """The numeric history of a job's W&B run folder (offline or synced), one row per ``log`` call."""
    import pandas as pd

    from runner import wandb_offline

    folders = wandb_offline.run_folders(job_dir)
    if not folders:
        return None
    rows = [
        {k: v for k, v in row.items() if isinstance(v, int | float) and not isinstance(v, bool)}
        for row in wandb_offline.history(folders[-1])
    ]
    rows = [{k: v for k, v in row.items() if not k.startswith("_")} for row in rows]
    return pd.DataFrame(rows) if any(rows) else None


CURVE_READERS = {"csv": csv_scalars, "tensorboard": tensorboard_scalars, "wandb": wandb_scalars}


def read_curves(job_dir: Path | dict) -> dict[str, dict[int, float]]:
    """``{metric: {epoch: value}}`` of a job's epoch-level metrics from the first logger that has them
    (CSV, TensorBoard, W&B); step-level values (``*_step``) are left out and an ``*_epoch`` suffix dropped.
    An archived job's curves (:mod:`runner.table_archive`) are already that dict and come back as given."""
    if isinstance(job_dir, dict):
        return job_dir
    for reader in CURVE_READERS.values():
        frame = reader(job_dir)
        if frame is None or "epoch" not in frame:
            continue
        curves: dict[str, dict[int, float]] = {}
        for column in frame.columns:
            if column in NON_METRIC_KEYS or column.endswith("_step"):
                continue
            series = frame[["epoch", column]].dropna()
            if len(series):
                values = series.groupby("epoch")[column].last()
                curves[column.removesuffix("_epoch")] = {int(e): float(v) for e, v in values.items()}
        if curves:
            return curves
    return {}


def curve_metrics(names: set[str], limit: int = MAX_CURVE_PANELS) -> list[str]:
    """The curves worth a panel: validation metrics, then the training loss (at most ``limit``)."""
    val = sorted(n for n in names if n.startswith("val/") and not n.endswith("_weighted"))
    train = [n for n in ("train/loss",) if n in names]
    return (val + train)[:limit]


def readable(name: str) -> str:
    """``val/ndcg@10`` -> ``validation ndcg@10``; ``test/ccd/induced_acc`` -> ``test ccd induced acc``."""
    stage, _, rest = name.partition("/")
    stage = {"val": "validation", "train": "training"}.get(stage, stage)
    return f"{stage} {rest.replace('/', ' ').replace('_', ' ')}".strip() if rest else name


def curves_figure(
    curves: dict[str, dict[str, dict[int, float]]],
    finals: dict[str, dict[str, list[float]]] | None = None,
    title: str | None = None,
):
    """One figure: a panel per curve metric (``{metric: {group: {epoch: value}}}``, a line per group)
    and a panel per final metric (``{metric: {group: [value per seed]}}``, a bar per group: the mean,
    the seeds' std as the error bar, the value written on the bar). Only panels with data are drawn;
    one colour per group and a single legend. None when there is nothing to draw."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finals = finals or {}
    curves = {m: g for m, g in curves.items() if any(len(points) for points in g.values())}
    finals = {m: g for m, g in finals.items() if any(len(v) for v in g.values())}
    panels = [("curve", m) for m in curves] + [("final", m) for m in finals]
    if not panels:
        return None
    groups = sorted(
        {g for series in curves.values() for g in series} | {g for v in finals.values() for g in v}
    )
    colours = {
        g: plt.get_cmap("tab10" if len(groups) <= 10 else "tab20")(i % 20) for i, g in enumerate(groups)
    }
    cols = min(3, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.6 * rows), squeeze=False)
    for ax, (kind, metric) in zip(axes.flat, panels, strict=False):
        if kind == "curve":
            for group, points in sorted(curves[metric].items()):
                if points:
                    epochs = sorted(points)
                    ax.plot(
                        epochs, [points[e] for e in epochs], marker="o", markersize=3, color=colours[group]
                    )
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
            ax.set_title(readable(metric))
        else:
            present = [g for g in groups if finals[metric].get(g)]
            means = [statistics.fmean(finals[metric][g]) for g in present]
            stds = [
                statistics.stdev(finals[metric][g]) if len(finals[metric][g]) > 1 else 0.0 for g in present
            ]
            positions = range(len(present))
            ax.barh(
                positions,
                means,
                xerr=[s if s > 0 else math.nan for s in stds],
                color=[colours[g] for g in present],
                capsize=3,
            )
            right = max(m + s for m, s in zip(means, stds, strict=True))
            for y, (m, s) in enumerate(zip(means, stds, strict=True)):  # the value right of its error bar
                ax.text(m + s + 0.02 * max(right, 1e-9), y, f"{m:.3f}", va="center", fontsize=8)
            ax.set_yticks(list(positions), [""] * len(present))
            ax.invert_yaxis()
            ax.set_xlim(0, max(right * 1.25, 1e-9))
            ax.set_title(f"{readable(metric)} (final, mean ± std)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(panels) :]:
        fig.delaxes(ax)
    if title:
        fig.suptitle(title, fontsize=10)
    handles = [plt.Line2D([], [], color=colours[g], marker="s", linestyle="", markersize=8) for g in groups]
    ncol = min(3, len(groups))
    fig.legend(handles, groups, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    legend_rows = math.ceil(len(groups) / ncol)
    fig.tight_layout(rect=(0, min(0.4, 0.03 + 0.045 * legend_rows / rows), 1, 0.97 if title else 1))
    return fig


def plot_curves(jobs: list[dict], out_file: Path, title: str | None = None) -> bool:
    """``report.png`` of a sweep (see :func:`curves_figure`): mean over seeds per group; False if the
    jobs logged neither curves nor test metrics."""
    import matplotlib.pyplot as plt
    import pandas as pd

    per_group: dict[str, list[dict[str, dict[int, float]]]] = defaultdict(list)
    for job in jobs:
        per_group[job["group"]].append(read_curves(job["curves"]))
    names = {name for runs in per_group.values() for run in runs for name in run}
    curves: dict[str, dict[str, dict[int, float]]] = {}
    for name in curve_metrics(names):
        curves[name] = {}
        for group, runs in per_group.items():
            series = [pd.Series(run[name]) for run in runs if run.get(name)]
            if series:
                mean = pd.concat(series, axis=1).mean(axis=1)
                curves[name][group] = {int(e): float(v) for e, v in mean.items()}
    finals: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    test_names = sorted({n for job in jobs for n in job["metrics"] if n.startswith("test/")})
    for name in test_names[:MAX_TEST_PANELS]:
        for job in jobs:
            value = job["metrics"].get(name)
            if value is not None and math.isfinite(value):
                finals[name][job["group"]].append(value)
    figure = curves_figure(curves, finals, title=title)
    if figure is None:
        return False
    figure.savefig(out_file, dpi=110)
    plt.close(figure)
    return True


def unfinished_jobs(sweep_dir: Path) -> list[str]:
    """Job folders (with a ``.hydra`` folder) holding neither ``metrics.json`` nor a failure file: the
    job was killed (or is still running)."""
    return [
        job.name
        for job in sorted(p for p in Path(sweep_dir).iterdir() if p.is_dir() and (p / ".hydra").is_dir())
        if not (job / "metrics.json").is_file() and not (job / FAILURE_FILE).is_file()
    ]


def select_metrics(jobs: list[dict], patterns: list[str] | None) -> None:
    """Keep only the final metrics whose names match one of the glob ``patterns`` (all when None)."""
    if not patterns:
        return
    from fnmatch import fnmatchcase

    for job in jobs:
        job["metrics"] = {k: v for k, v in job["metrics"].items() if any(fnmatchcase(k, p) for p in patterns)}


def build_report(sweep_dir: Path, metrics: list[str] | None = None, out: Path | None = None) -> str:
    """Write report.md (+ report.png when curves were logged) into ``sweep_dir``; return the markdown.
    ``metrics``: glob patterns of the final metrics to tabulate (default: every evaluation metric).
    A table sweep (``python -m runner -m table=<paper>``) gets its results table instead, claims first
    (:mod:`runner.table_report`), also written to ``<out>/results.md`` when ``out`` is given."""
    from runner.table_archive import is_archive
    from runner.table_report import build_table_report, load_table

    jobs = load_jobs(sweep_dir)
    failures = failed_jobs(sweep_dir)
    unfinished = unfinished_jobs(sweep_dir)
    table = load_table(sweep_dir)
    if not jobs and not failures and not unfinished and not is_archive(sweep_dir):
        raise FileNotFoundError(f"no job folders with metrics.json under {sweep_dir}")
    if table is not None:  # its columns narrow on the pooled runs; the archived records keep every metric
        return build_table_report(sweep_dir, jobs, table, failures, unfinished, out, columns=metrics)
    select_metrics(jobs, metrics)
    common = factor_out_common_overrides(jobs)
    parts = [f"# Sweep report: {sweep_dir}", ""]
    if common:
        parts += [f"Every job: `{' '.join(common)}`", ""]
    parts += [summary_table(jobs) if jobs else "(no finished job)"]
    if failures:
        parts += [
            "",
            f"Failed jobs ({len(failures)}):",
            *[f"- job {name}: {err} (see {name}/{FAILURE_FILE})" for name, err in failures],
        ]
    if unfinished:
        parts += [
            "",
            f"Jobs that did not finish ({len(unfinished)}; killed or still running: neither metrics.json nor "
            f"{FAILURE_FILE}):",
            *[f"- job {name}: did not finish" for name in unfinished],
        ]
    has_plot = plot_curves(jobs, sweep_dir / "report.png", title=str(sweep_dir)) if jobs else False
    parts += [
        "",
        "![metric curves and final test metrics](report.png)"
        if has_plot
        else "(no figure: the runs logged no curves and no test metric, e.g. debug=fdr)",
    ]
    markdown = "\n".join(parts) + "\n"
    (sweep_dir / "report.md").write_text(markdown)
    return markdown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun folder (logs/<task>/multiruns/<time>)")
    parser.add_argument(
        "--metrics",
        nargs="+",
        default=None,
        help="glob patterns of the final metrics to report (e.g. 'test/acc' 'test/macro_f1'); default: all",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="a table sweep's results.md + PNGs also go here (e.g. experiments/<paper>; its notes.md is appended)",
    )
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        print(
            f"error: {args.sweep_dir} is not a folder; give a multirun folder such as logs/<task>/multiruns/<time>",
            file=sys.stderr,
        )
        return 2
    try:
        markdown = build_report(args.sweep_dir, args.metrics, args.out)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(markdown)
    from runner.table_archive import is_archive

    written = (
        (args.out or args.sweep_dir.parent) / "results.md"
        if is_archive(args.sweep_dir)
        else args.sweep_dir / "report.md"
    )
    print(f"written: {written}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
