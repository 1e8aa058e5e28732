"""Dual-teacher KD on the HMDB51 twin: student alone, single-teacher KD (ViT / CNN), averaged KD,
DKD, DIST, DT-KD and its two ablations, over 3 seeds -> results.md (top-1 mean ± std) + results.png.

    .venv/bin/python experiments/dual_teacher/run.py --jobs 2 --threads 1  # 2 CPU cores: measured 64 min
        # on a machine shared with other jobs (load 6-10); ~20-30 min expected when idle (one run: 65 s)
    .venv/bin/python experiments/dual_teacher/run.py --seeds 0 --epochs 2   # smoke run
    .venv/bin/python experiments/dual_teacher/run.py --jobs 7 --first-core 2  # 7 runs at a time, 2 cores each
    .venv/bin/python experiments/dual_teacher/run.py --summarise-only --jobs 2 --threads 1  # table again

Run folders and logs go to ``--runs-dir`` (default logs/dual_teacher_sweep, not versioned);
results.md, results.png and runs.json to ``--out`` (default: this folder).

Every run is ``python -m runner experiment=dual_teacher_hmdb_twin method=<m> seed=<s>`` (composed
in-process). The teachers are trained once (first run, cached by hash under <data_dir>/teachers)
and shared by every method and seed. For speed and a like-for-like comparison all runs use the
teacher-output cache: every method, the student alone included, trains on the same K fixed
augmented views per clip (``method.distill.cache=true``), and validation runs only after the last
epoch (HMDB51 has no val split: val = test, so nothing is selected on it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from runner.compose import compose_run_config

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

METHODS = [  # (method config, label in the table)
    ("dt_student_alone", "Student alone (X3D-S, CE)"),
    ("kd_vit", "KD from ViT teacher"),
    ("kd_cnn", "KD from CNN teacher"),
    ("kd_avg", "Averaged two-teacher KD"),
    ("dkd", "DKD (ViT teacher)"),
    ("dist", "DIST (ViT teacher)"),
    ("dual_teacher", "DT-KD (DATW + SDD + RKD)"),
    ("dt_kd_no_datw", "DT-KD w/o DATW"),
    ("dt_kd_no_sdd", "DT-KD w/o SDD"),
]


def compose_run(overrides: list[str], run_dir: Path, data_dir: Path):
    """The config of one run, as ``python -m runner <overrides>`` would compose it, writing to ``run_dir``."""
    return compose_run_config(
        overrides, output_dir=run_dir, root_dir=REPO, data_dir=data_dir, log_dir=run_dir.parent
    )


def run_one(method: str, seed: int, args: argparse.Namespace) -> dict:
    from runner.train import run

    run_dir = Path(args.runs_dir) / f"{method}_seed{seed}"
    overrides = [
        "experiment=dual_teacher_hmdb_twin",
        f"method={method}",
        f"seed={seed}",
        "method.distill.cache=true",
        f"method.distill.cache_views={args.views}",
        "method.distill.student_alone_reference=false",
        f"trainer.max_epochs={args.epochs}",
        f"trainer.check_val_every_n_epoch={args.epochs}",
        "callbacks=none",
        "logger=csv",
    ]
    if args.teacher_epochs is not None:
        overrides.append(f"method.distill.teacher_training.max_epochs={args.teacher_epochs}")
    overrides += args.set
    cfg = compose_run(overrides, run_dir, Path(args.data_dir))
    started = time.time()
    run(cfg)
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    return {"method": method, "seed": seed, "seconds": round(time.time() - started, 1), **metrics}


def summarise(rows: list[dict], args: argparse.Namespace, total_seconds: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def stats(values: list[float]) -> tuple[float, float]:
        return statistics.mean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)

    teacher_acc = {}
    for key in ("test/teacher_cnn_acc", "test/teacher_vit_acc"):
        values = [r[key] for r in rows if key in r]
        if values:
            teacher_acc[key] = values[0]  # the same frozen teacher in every run
    cfg = compose_run(
        ["experiment=dual_teacher_hmdb_twin", *args.set], Path(args.runs_dir), Path(args.data_dir)
    )
    num_classes = int(cfg.dataset.twin.num_classes)
    student, cnn, vit = cfg.student, cfg.method.teachers.cnn.net, cfg.method.teachers.vit.net
    teacher_epochs = args.teacher_epochs or cfg.method.distill.teacher_training.max_epochs
    lines = [
        "# Dual-teacher KD on the HMDB51 twin",
        "",
        f"Produced by `experiments/dual_teacher/run.py` ({len(args.seeds)} seeds, {args.epochs} epochs, "
        f"K={args.views} cached views per clip; {total_seconds / 60:.1f} min wall with {args.jobs} run(s) at a "
        f"time; the runs' own times sum to {sum(r['seconds'] for r in rows) / 60:.1f} min, "
        f"{args.threads} torch thread(s) each).",
        f"Student X3D-S (width {student.width_factor}, depth {student.depth_factor}); CNN teacher X3D-M "
        f"(width {cnn.width_factor}, depth {cnn.depth_factor}); ViT teacher: a {vit.depth}-layer ViViT-style "
        f"transformer (width {vit.dim}) on a {vit.num_frames}-frame subsampled view (size override of "
        f"MViTv2-S); teachers trained {teacher_epochs} epochs.",
        f"Top-1 accuracy on the twin's test split (HMDB51 split-1 layout, {num_classes} classes).",
        "",
        "| reference | top-1 |",
        "|---|---|",
        f"| chance (uniform over {num_classes} classes) | {1 / num_classes:.3f} |",
    ]
    for key, label in (("test/teacher_cnn_acc", "CNN teacher"), ("test/teacher_vit_acc", "ViT teacher")):
        if key in teacher_acc:
            lines.append(f"| {label} | {teacher_acc[key]:.3f} |")
    lines += ["", "| method | top-1 mean ± std | per seed |", "|---|---|---|"]
    labels, means, stds = [], [], []
    for method, label in METHODS:
        accs = [r["test/acc"] for r in rows if r["method"] == method and "test/acc" in r]
        if not accs:
            continue
        m, s = stats(accs)
        labels.append(label)
        means.append(m)
        stds.append(s)
        lines.append(f"| {label} | {m:.3f} ± {s:.3f} | {', '.join(f'{a:.3f}' for a in accs)} |")
    lines += [
        "",
        "Run seconds per method (mean): "
        + ", ".join(
            f"{method} {statistics.mean([r['seconds'] for r in rows if r['method'] == method]):.0f}"
            for method, _ in METHODS
            if any(r["method"] == method for r in rows)
        ),
        "",
    ]
    if args.notes and Path(args.notes).is_file():
        lines += [Path(args.notes).read_text().strip(), ""]
    out = Path(args.out)
    (out / "results.md").write_text("\n".join(lines))
    fig, ax = plt.subplots(figsize=(9, 4))
    ax.barh(range(len(labels)), means, xerr=stds, color="tab:blue", alpha=0.8)
    ax.set_yticks(range(len(labels)), labels)
    ax.invert_yaxis()
    for key, colour in (("test/teacher_cnn_acc", "tab:green"), ("test/teacher_vit_acc", "tab:red")):
        if key in teacher_acc:
            ax.axvline(teacher_acc[key], color=colour, ls="--", label=key.split("/")[1].replace("_acc", ""))
    ax.axvline(1 / num_classes, color="grey", ls=":", label="chance")
    ax.set_xlabel(f"test top-1 (mean ± std over {len(args.seeds)} seeds)")
    ax.set_title("Dual-teacher KD on the HMDB51 twin")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "results.png", dpi=120)
    (out / "runs.json").write_text(json.dumps(rows, indent=1))
    print("\n".join(lines))


def run_parallel(pairs: list[tuple[str, int]], args: argparse.Namespace) -> None:
    """Each run in its own process pinned to `threads` cores (slot i: cores first_core + threads*i, ...)."""
    slots = list(range(args.jobs))

    def launch(pair: tuple[str, int]) -> None:
        slot = slots.pop()
        available = sorted(os.sched_getaffinity(0))
        n = args.threads
        cores = set(available[args.first_core + n * slot : args.first_core + n * slot + n]) or set(available)
        threads = str(args.threads)
        env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        cmd = [sys.executable, __file__, "--single", pair[0], str(pair[1]), *passthrough(args)]
        log = Path(args.runs_dir) / f"{pair[0]}_seed{pair[1]}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as fh:
            subprocess.run(
                cmd,
                env=env,
                stdout=fh,
                stderr=subprocess.STDOUT,
                preexec_fn=lambda: os.sched_setaffinity(0, cores),
                check=False,
            )
        slots.append(slot)
        print(f"[dual_teacher] done {pair[0]} seed {pair[1]}", file=sys.stderr)

    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(launch, pairs))


def passthrough(args: argparse.Namespace) -> list[str]:
    out = [
        "--epochs",
        str(args.epochs),
        "--views",
        str(args.views),
        "--out",
        args.out,
        "--runs-dir",
        args.runs_dir,
        "--data-dir",
        args.data_dir,
        "--threads",
        str(args.threads),
    ]
    if args.teacher_epochs is not None:
        out += ["--teacher-epochs", str(args.teacher_epochs)]
    return out + ["--set", *args.set] if args.set else out


def collect(pairs: list[tuple[str, int]], args: argparse.Namespace) -> list[dict]:
    rows = []
    for method, seed in pairs:
        path = Path(args.runs_dir) / f"{method}_seed{seed}" / "metrics.json"
        if path.is_file():
            payload = json.loads(path.read_text())
            rows.append(
                {"method": method, "seed": seed, "seconds": payload["wall_time_s"], **payload["metrics"]}
            )
        else:
            print(f"[dual_teacher] missing result: {method} seed {seed}", file=sys.stderr)
    return rows


def sweep_wall_seconds(pairs: list[tuple[str, int]], args: argparse.Namespace) -> float:
    """Wall time of a finished sweep from its run folders: first config written -> last metrics."""
    folders = [Path(args.runs_dir) / f"{m}_seed{s}" for m, s in pairs]
    starts = [
        (f / "config_resolved.yaml").stat().st_mtime
        for f in folders
        if (f / "config_resolved.yaml").is_file()
    ]
    ends = [(f / "metrics.json").stat().st_mtime for f in folders if (f / "metrics.json").is_file()]
    return max(ends) - min(starts) if starts and ends else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--views", type=int, default=8, help="K cached augmented views per clip")
    parser.add_argument("--teacher-epochs", type=int, default=None, help="default: the experiment's")
    parser.add_argument("--methods", nargs="+", default=[m for m, _ in METHODS])
    parser.add_argument("--out", default=str(HERE))
    parser.add_argument("--data-dir", default=str(REPO / "data"))
    parser.add_argument(
        "--runs-dir", default=str(REPO / "logs" / "dual_teacher_sweep"), help="run folders and logs"
    )
    parser.add_argument("--notes", default=str(HERE / "notes.md"), help="text appended to results.md")
    parser.add_argument(
        "--set", nargs="*", default=[], help="extra Hydra overrides for every run (smoke tests)"
    )
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (each pinned to 2 cores)")
    parser.add_argument("--first-core", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch threads per run")
    parser.add_argument("--summarise-only", action="store_true", help="table + PNG from the runs present")
    parser.add_argument("--single", nargs=2, metavar=("METHOD", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.summarise_only:
        pairs = [(m, s) for s in args.seeds for m in args.methods]
        summarise(collect(pairs, args), args, sweep_wall_seconds(pairs, args))
        return 0
    if args.single:
        import logging

        import torch

        logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s] %(message)s")

        torch.set_num_threads(args.threads)
        run_one(args.single[0], int(args.single[1]), args)
        return 0
    pairs = [(m, s) for s in args.seeds for m in args.methods]
    started = time.time()
    if args.jobs > 1:
        # first the single-teacher runs of the first seed, in parallel: each trains (and caches)
        # its teacher; every other run then finds both teachers cached
        first = [p for p in pairs if p in {("kd_cnn", args.seeds[0]), ("kd_vit", args.seeds[0])}] or pairs[:1]
        run_parallel(first, args)
        run_parallel([p for p in pairs if p not in first], args)
    else:
        for method, seed in pairs:
            row = run_one(method, seed, args)
            print(
                f"[dual_teacher] {method} seed {seed}: test/acc {row.get('test/acc', float('nan')):.3f} "
                f"({row['seconds']:.0f}s, total {(time.time() - started) / 60:.1f} min)",
                file=sys.stderr,
            )
    summarise(collect(pairs, args), args, time.time() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
