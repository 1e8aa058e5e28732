"""``python -m runner.report <multirun_dir>``: one table and one figure for a sweep.

Reads every job folder of a Hydra multirun (``<dir>/<job>/metrics.json`` and
``<dir>/<job>/.hydra/overrides.yaml``), groups jobs by their overrides other than ``seed``, and
writes next to the runs:

* ``report.md``: a markdown table, mean ± std over the seeds of each group for every final metric
  (std is the sample standard deviation; "–" for a single seed), plus the failed jobs;
* ``report.png``: the logged metric curves (CSV logger ``metrics.csv``), mean over seeds per group.

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
                "seed": payload.get("seed"),
                "metrics": {k: v for k, v in payload.get("metrics", {}).items() if v is not None},
                "curves": job_dir / "csv" / "metrics.csv",
            }
        )
    return jobs


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


def plot_curves(jobs: list[dict], out_file: Path) -> bool:
    """Mean (over seeds) curve of every logged epoch-level metric, one panel per metric; False if none."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    per_group: dict[str, list] = defaultdict(list)
    for job in jobs:
        if job["curves"].is_file():
            frame = pd.read_csv(job["curves"])
            if "epoch" in frame:
                per_group[job["group"]].append(frame)
    if not per_group:
        return False
    metric_names = sorted(
        {
            c
            for frames in per_group.values()
            for f in frames
            for c in f.columns
            if c not in ("epoch", "step") and not c.endswith("_step")
        }
    )
    if not metric_names:
        return False
    cols = min(3, len(metric_names))
    rows = math.ceil(len(metric_names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.5 * rows), squeeze=False)
    for ax, name in zip(axes.flat, metric_names, strict=False):
        for group, frames in sorted(per_group.items()):
            series = [f.groupby("epoch")[name].mean().dropna() for f in frames if name in f]
            series = [s for s in series if len(s)]
            if not series:
                continue
            mean = pd.concat(series, axis=1).mean(axis=1)
            ax.plot(mean.index, mean.values, marker="o", markersize=3, label=group)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(metric_names) :]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=min(3, len(labels)), fontsize=8)
        fig.tight_layout(rect=(0, 0.06 + 0.02 * (len(labels) // 3), 1, 1))
    fig.savefig(out_file, dpi=110)
    plt.close(fig)
    return True


def build_report(sweep_dir: Path) -> str:
    """Write report.md (+ report.png when curves were logged) into ``sweep_dir``; return the markdown."""
    jobs = load_jobs(sweep_dir)
    failures = failed_jobs(sweep_dir)
    if not jobs and not failures:
        raise FileNotFoundError(f"no job folders with metrics.json under {sweep_dir}")
    parts = [f"# Sweep report: {sweep_dir}", "", summary_table(jobs) if jobs else "(no finished job)"]
    if failures:
        parts += [
            "",
            f"Failed jobs ({len(failures)}):",
            *[f"- job {name}: {err} (see {name}/{FAILURE_FILE})" for name, err in failures],
        ]
    has_plot = plot_curves(jobs, sweep_dir / "report.png") if jobs else False
    parts += [
        "",
        "![metric curves](report.png)"
        if has_plot
        else "(no metric curves: runs logged no metrics.csv, e.g. debug=fdr)",
    ]
    markdown = "\n".join(parts) + "\n"
    (sweep_dir / "report.md").write_text(markdown)
    return markdown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runner.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun folder (logs/<task>/multiruns/<time>)")
    args = parser.parse_args(argv)
    if not args.sweep_dir.is_dir():
        print(
            f"error: {args.sweep_dir} is not a folder; give a multirun folder such as logs/<task>/multiruns/<time>",
            file=sys.stderr,
        )
        return 2
    try:
        markdown = build_report(args.sweep_dir)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(markdown)
    print(f"written: {args.sweep_dir / 'report.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
