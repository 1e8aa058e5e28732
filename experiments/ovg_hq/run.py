"""OVG-HQ-Unify on the QVHighlights-Unify twin: oR@1 and omAP per query condition for the full model,
its ablations and the baselines, 3 seeds -> results.md + results.png (next to this file).

    .venv/bin/python experiments/ovg_hq/run.py --jobs 2            # the table (2 runs at a time, 1 thread each)
    .venv/bin/python experiments/ovg_hq/run.py --summarise-only    # re-render from the sweep folders

The runs are ``python -m runner -m experiment=ovg_hq_qvh_twin ... seed=0,1,2`` sweeps (the path users
run; joblib launcher, one torch thread per job) into ``--runs-dir/<sweep>``, each followed by
``python -m runner.report <sweep>`` (report.md there). This script only launches those commands and
then reads the sweeps' ``metrics.json`` files to lay the per-condition tables out:

* ``learned``: ``method=ovg_hq`` (OVG-HQ-Unify: TTT memory + distillation), ``ovg_hq_no_distill``,
  ``ovg_hq_expert`` (the segment+text expert alone);
* ``memory``: ``model=ovg_hq_no_memory | ovg_hq_attention`` with ``method=ovg_hq_no_distill``
  (compared with the no-distillation TTT row, so one expert is trained);
* ``trivial``: ``method=ovg_hq_trivial | ovg_hq_random``;
* ``offline``: ``model=ovg_hq_offline`` with ``method=ovg_hq_no_distill`` (the upper bound).

The segment+text expert used for distillation is trained once (first ``ovg_hq`` job, cached under
``<data_dir>/ovg_hq_experts``) and shared by the seeds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
EXPERIMENT = "ovg_hq_qvh_twin"
CONDITIONS = (
    "text",
    "image_r",
    "image_r+text",
    "image_c+text_c",
    "image_g",
    "image_g+text",
    "segment_g",
    "segment_g+text",
)
SWEEPS = {  # sweep name -> overrides (comma lists are swept)
    "learned": ["method=ovg_hq,ovg_hq_no_distill,ovg_hq_expert"],
    "memory": ["method=ovg_hq_no_distill", "model=ovg_hq_no_memory,ovg_hq_attention"],
    "trivial": ["method=ovg_hq_trivial,ovg_hq_random"],
    "offline": ["method=ovg_hq_no_distill", "model=ovg_hq_offline"],
}
ROWS = [  # (label, overrides that identify the group, note)
    ("OVG-HQ-Unify (TTT memory + distillation)", {"method": "ovg_hq"}, "full model"),
    ("w/o distillation", {"method": "ovg_hq_no_distill", "model": None}, "ablation"),
    ("w/o distillation, memory=none (sliding window)", {"model": "ovg_hq_no_memory"}, "ablation"),
    ("w/o distillation, memory=attention", {"model": "ovg_hq_attention"}, "ablation"),
    ("segment+text expert alone", {"method": "ovg_hq_expert"}, "baseline"),
    (
        "offline upper bound (sees the whole video), w/o distillation",
        {"model": "ovg_hq_offline"},
        "upper bound",
    ),
    ("trivial: most frequent length ending now", {"method": "ovg_hq_trivial"}, "trivial"),
    ("trivial: random length ending now", {"method": "ovg_hq_random"}, "trivial"),
]
TEXT_METRICS = ("oR1@0.3", "oR1@0.5", "oR1@0.7", "omAP@0.5", "omAP@0.75", "omAP", "R1@0.5", "mAP")


def launch(name: str, overrides: list[str], args: argparse.Namespace) -> Path:
    sweep_dir = Path(args.runs_dir).resolve() / name
    command = [
        sys.executable,
        "-m",
        "runner",
        "-m",
        f"experiment={EXPERIMENT}",
        *overrides,
        f"seed={','.join(str(s) for s in args.seeds)}",
        "hydra/launcher=joblib",
        f"hydra.launcher.n_jobs={args.jobs}",
        "torch_threads=1",
        f"hydra.sweep.dir={sweep_dir}",
        *args.set,
    ]
    print("$", " ".join(command), flush=True)
    result = subprocess.run(command, cwd=REPO)
    if result.returncode:
        print(f"sweep {name} ended with exit code {result.returncode} (failed jobs are listed above)")
    subprocess.run(
        [sys.executable, "-m", "runner.report", str(sweep_dir)], cwd=REPO, stdout=subprocess.DEVNULL
    )
    return sweep_dir


def load_jobs(sweep_dir: Path) -> list[dict]:
    jobs = []
    for metrics_file in sorted(sweep_dir.glob("*/metrics.json")):
        payload = json.loads(metrics_file.read_text())
        overrides_file = metrics_file.parent / ".hydra" / "overrides.yaml"
        overrides = (
            yaml.safe_load(overrides_file.read_text()) if overrides_file.is_file() else payload["overrides"]
        )
        choice = dict(
            o.split("=", 1) for o in overrides if "=" in o and not o.startswith(("seed=", "hydra", "torch"))
        )
        jobs.append(
            {
                "choice": choice,
                "seed": payload["seed"],
                "metrics": payload["metrics"],
                "wall": payload.get("wall_time_s", 0.0),
            }
        )
    return jobs


def matches(job: dict, selector: dict) -> bool:
    return all(job["choice"].get(k) == v for k, v in selector.items())


def cell(values: list[float]) -> str:
    if not values:
        return "–"
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def shown_path(folder: str) -> str:
    """``folder`` relative to the repository when inside it (no machine-specific prefix in results.md)."""
    path = Path(folder).resolve()
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def summarise(jobs: list[dict], args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(label, [j for j in jobs if matches(j, sel)], note) for label, sel, note in ROWS]
    rows = [r for r in rows if r[1]]
    lines = [
        "# OVG-HQ-Unify on the QVHighlights-Unify twin",
        "",
        f"Produced by `experiments/ovg_hq/run.py` from `python -m runner -m experiment={EXPERIMENT} ...` sweeps "
        f"(seeds {','.join(map(str, args.seeds))}; sweep folders and their `report.md` under `{shown_path(args.runs_dir)}`; "
        f"{sum(j['wall'] for j in jobs) / 60:.0f} min of run time summed over the runs, on the shared 2-core "
        "CPU machine, 1 torch thread per run). Values: mean ± std over seeds, in %, test split of the twin, the model selected on val "
        "text-only oR@1,IoU=0.5. Online metrics average the timeliness tolerances t_s ∈ {1, 3, 5} s.",
        "",
        "## oR@1, IoU=0.5 per query condition",
        "",
        "| method | " + " | ".join(CONDITIONS) + " |",
        "|---|" + "---|" * len(CONDITIONS),
    ]
    for label, members, _ in rows:
        lines.append(
            f"| {label} | "
            + " | ".join(
                cell(
                    [
                        m["metrics"].get(f"test/{c}/oR1@0.5")
                        for m in members
                        if f"test/{c}/oR1@0.5" in m["metrics"]
                    ]
                )
                for c in CONDITIONS
            )
            + " |"
        )
    lines += [
        "",
        "## omAP (mean over IoU 0.5:0.05:0.95) per query condition",
        "",
        "| method | " + " | ".join(CONDITIONS) + " |",
        "|---|" + "---|" * len(CONDITIONS),
    ]
    for label, members, _ in rows:
        lines.append(
            f"| {label} | "
            + " | ".join(
                cell([m["metrics"][f"test/{c}/omAP"] for m in members if f"test/{c}/omAP" in m["metrics"]])
                for c in CONDITIONS
            )
            + " |"
        )
    lines += [
        "",
        "## Text-only queries, all metrics",
        "",
        "| method | seeds | " + " | ".join(TEXT_METRICS) + " | run min |",
        "|---|---|" + "---|" * (len(TEXT_METRICS) + 1),
    ]
    for label, members, _ in rows:
        seeds = ",".join(str(m["seed"]) for m in sorted(members, key=lambda m: m["seed"]))
        wall = statistics.fmean(m["wall"] for m in members) / 60
        lines.append(
            f"| {label} | {seeds} | "
            + " | ".join(
                cell([m["metrics"][f"test/text/{k}"] for m in members if f"test/text/{k}" in m["metrics"]])
                for k in TEXT_METRICS
            )
            + f" | {wall:.1f} |"
        )
    notes = HERE / "notes.md"
    if notes.is_file():
        lines += ["", notes.read_text().strip()]
    (HERE / "results.md").write_text("\n".join(lines) + "\n")

    fig, axes = plt.subplots(2, 1, figsize=(13, 8), sharex=True)
    width = 0.8 / max(1, len(rows))
    for ax, metric, title in ((axes[0], "oR1@0.5", "oR@1, IoU=0.5"), (axes[1], "omAP", "omAP")):
        for i, (label, members, _) in enumerate(rows):
            means, stds = [], []
            for c in CONDITIONS:
                vals = [
                    100 * m["metrics"][f"test/{c}/{metric}"]
                    for m in members
                    if f"test/{c}/{metric}" in m["metrics"]
                ]
                means.append(statistics.fmean(vals) if vals else 0.0)
                stds.append(statistics.stdev(vals) if len(vals) > 1 else 0.0)
            xs = [k + (i - (len(rows) - 1) / 2) * width for k in range(len(CONDITIONS))]
            ax.bar(xs, means, width, yerr=stds, label=label, capsize=2)
        ax.set_ylabel(f"{title} (%)")
        ax.grid(axis="y", alpha=0.3)
    axes[1].set_xticks(range(len(CONDITIONS)), CONDITIONS, rotation=20)
    axes[0].legend(fontsize=7, ncol=2)
    fig.suptitle("OVG-HQ-Unify on the QVHighlights-Unify twin (test, mean ± std over seeds)")
    fig.tight_layout()
    fig.savefig(HERE / "results.png", dpi=110)
    plt.close(fig)
    print((HERE / "results.md").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--runs-dir", default=str(REPO / "logs" / "ovg_hq_table"))
    parser.add_argument("--sweeps", nargs="+", default=list(SWEEPS), choices=list(SWEEPS))
    parser.add_argument("--set", nargs="*", default=[], help="extra overrides for every run")
    parser.add_argument("--summarise-only", action="store_true")
    args = parser.parse_args()
    if not args.summarise_only:
        for name in args.sweeps:
            launch(name, SWEEPS[name], args)
    jobs = [j for name in SWEEPS for j in load_jobs(Path(args.runs_dir) / name)]
    summarise(jobs, args)


if __name__ == "__main__":
    main()
