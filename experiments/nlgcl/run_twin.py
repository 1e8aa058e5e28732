"""NLGCL and its baselines on a synthetic twin, several seeds → ``results.md`` + ``curves.png``.

    .venv/bin/python experiments/nlgcl/run_twin.py                     # yelp twin, seeds 0 1 2
    .venv/bin/python experiments/nlgcl/run_twin.py --dataset pinterest --seeds 0 1 --max-epochs 60

Every run is the real flow (``runner.train.run`` on ``experiment=<model>_<dataset>
dataset.synthetic=true``): the twin's ``.inter`` file is read by the RecBole reader, split 80/10/10
per user, trained with device-side sampling, evaluated by full ranking; the test metrics are those
of the best validation NDCG@10 epoch. CPU-sized schedule (overrides printed in results.md): fewer
epochs, a shorter warm-up and patience, a larger learning rate than the card's (lr 5e-4 over up to
500 epochs is a GPU budget). MostPop is in every table; the learned models must beat it clearly.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

MODELS = ("mostpop", "bprmf", "lightgcn", "sgl", "simgcl", "xsimgcl", "ncl", "nlgcl")
LABELS = {
    "mostpop": "MostPop",
    "bprmf": "BPR-MF",
    "lightgcn": "LightGCN",
    "sgl": "SGL",
    "simgcl": "SimGCL",
    "xsimgcl": "XSimGCL",
    "ncl": "NCL",
    "nlgcl": "NLGCL",
}
METRICS = [f"{m}@{k}" for m in ("recall", "ndcg") for k in (10, 20, 50)]


def compose(overrides: list[str], root: Path):
    """The run config as ``python -m runner <overrides>`` would compose it, rooted in ``root``."""
    from runner.compose import compose_run_config

    return compose_run_config(overrides, output_dir=root / "run", root_dir=root)


def read_curve(csv_path: Path) -> tuple[list[float], list[float]]:
    """(val NDCG@10 per epoch, seconds per training epoch) from the CSV logger's file."""
    ndcg, seconds = {}, {}
    with open(csv_path) as fh:
        for row in csv.DictReader(fh):
            if not row.get("epoch"):
                continue
            epoch = int(float(row["epoch"]))
            if row.get("val/ndcg@10"):
                ndcg[epoch] = float(row["val/ndcg@10"])
            if row.get("time/epoch_s"):
                seconds[epoch] = float(row["time/epoch_s"])
    return [ndcg[e] for e in sorted(ndcg)], [seconds[e] for e in sorted(seconds)]


def run_one(model: str, dataset: str, seed: int, schedule: list[str], data_dir: Path, work: Path) -> dict:
    from runner.train import run

    root = work / f"{model}_{seed}"
    root.mkdir(parents=True, exist_ok=True)
    overrides = [
        f"experiment={model}_{dataset}",
        "dataset.synthetic=true",
        f"seed={seed}",
        f"paths.data_dir={data_dir}",
        "callbacks.rich_progress_bar=null",
        "+trainer.enable_progress_bar=false",
        "logger=csv",
    ]
    if model != "mostpop":
        overrides += schedule
    cfg = compose(overrides, root)
    started = time.perf_counter()
    run(cfg)
    wall = time.perf_counter() - started
    payload = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())
    curve, seconds = read_curve(Path(cfg.paths.output_dir) / "csv" / "metrics.csv")
    metrics = {m: payload["metrics"][f"test/{m}"] for m in METRICS}
    return {
        "model": model,
        "seed": seed,
        "metrics": metrics,
        "curve": curve,
        "s_per_epoch": statistics.mean(seconds) if seconds and model != "mostpop" else 0.0,
        "epochs": len(curve),
        "wall_s": wall,
    }


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def write_results(out: Path, results: list[dict], args, schedule: list[str], total_s: float) -> str:
    lines = [
        f"# NLGCL and baselines on the `{args.dataset}` synthetic twin",
        "",
        f"Produced by `experiments/nlgcl/run_twin.py --dataset {args.dataset} --seeds "
        f"{' '.join(map(str, args.seeds))} --max-epochs {args.max_epochs} --warmup {args.warmup} "
        f"--patience {args.patience}`"
        + (" (one process per seed, then `--merge`)" if args.merge else "")
        + " "
        f"({len(args.seeds)} seeds, {total_s / 60:.1f} min wall for the slowest process on: {args.machine}).",
        "",
        "Test metrics at the best validation NDCG@10 epoch, mean ± std over seeds; full ranking over",
        "all items with training and validation items masked. `s/epoch`: mean wall seconds of one",
        "training epoch (evaluation excluded). CPU schedule overrides for the learned models: "
        + ", ".join(f"`{o}`" for o in schedule)
        + ".",
        "",
        "| model | "
        + " | ".join(m.replace("recall", "Recall").replace("ndcg", "NDCG") for m in METRICS)
        + " | s/epoch | epochs |",
        "|---" * (len(METRICS) + 3) + "|",
    ]
    for model in args.models:
        rows = [r for r in results if r["model"] == model]
        if not rows:
            continue
        cells = [mean_std([r["metrics"][m] for r in rows]) for m in METRICS]
        s_epoch = statistics.mean(r["s_per_epoch"] for r in rows)
        epochs = statistics.mean(r["epochs"] for r in rows)
        lines.append(f"| {LABELS[model]} | " + " | ".join(cells) + f" | {s_epoch:.2f} | {epochs:.0f} |")
    table = "\n".join(lines)
    (out / "results.md").write_text(
        table + "\n\n" + verdict(results, args.models) + "\n\n![curves](curves.png)\n"
    )
    (out / "results.json").write_text(json.dumps(results, indent=1))
    return table


def verdict(results: list[dict], models) -> str:
    def mean(model: str, metric: str) -> float:
        values = [r["metrics"][metric] for r in results if r["model"] == model]
        return statistics.mean(values) if values else math.nan

    def secs(model: str) -> float:
        values = [r["s_per_epoch"] for r in results if r["model"] == model]
        return statistics.mean(values) if values else math.nan

    out = ["## What the card asks the twin to show", ""]
    pop = mean("mostpop", "ndcg@20")
    learned = [m for m in models if m != "mostpop"]
    beat = [m for m in learned if mean(m, "ndcg@20") > 1.2 * pop]
    out.append(
        f"- learned models beating MostPop's NDCG@20 ({pop:.4f}) by more than 20 %: "
        f"{', '.join(LABELS[m] for m in beat) or 'none'}"
    )
    if "nlgcl" in models:
        for other in ("lightgcn", "sgl", "simgcl"):
            if other in models:
                for metric in ("recall@20", "ndcg@20"):
                    a, b = mean("nlgcl", metric), mean(other, metric)
                    out.append(
                        f"- NLGCL vs {LABELS[other]} {metric}: {a:.4f} vs {b:.4f} "
                        f"({'higher' if a > b else 'not higher'})"
                    )
        if "sgl" in models:
            out.append(
                f"- s/epoch NLGCL {secs('nlgcl'):.2f} vs SGL {secs('sgl'):.2f} "
                f"({'lower' if secs('nlgcl') < secs('sgl') else 'not lower'})"
            )
    return "\n".join(out)


def plot(out: Path, results: list[dict], models) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for model in models:
        curves = [r["curve"] for r in results if r["model"] == model and r["curve"]]
        if not curves:
            continue
        length = min(len(c) for c in curves)
        mean = [statistics.mean(c[e] for c in curves) for e in range(length)]
        if model == "mostpop":
            ax.axhline(mean[0], color="grey", linestyle="--", label="MostPop")
        else:
            ax.plot(range(1, length + 1), mean, label=LABELS[model])
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation NDCG@10 (mean over seeds)")
    ax.set_title("training curves on the synthetic twin")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="yelp", choices=("yelp", "pinterest", "qb_video", "alibaba"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--max-epochs", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--patience", type=int, default=5)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent)
    parser.add_argument("--machine", default="2-core CPU, shared")
    parser.add_argument(
        "--merge",
        type=Path,
        nargs="+",
        default=None,
        help="only merge the results.json of earlier runs (e.g. one process per seed) into --out",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (1: on a shared, oversubscribed 2-core box OpenMP made steps ~20x slower)",
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    schedule = [
        f"trainer.max_epochs={args.max_epochs}",
        f"callbacks.early_stopping.warmup_epochs={args.warmup}",
        f"callbacks.early_stopping.patience={args.patience}",
        f"method.optimizer.lr={args.lr}",
        "+trainer.enable_model_summary=false",
    ]
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    started = time.perf_counter()
    if args.merge:
        results = [r for path in args.merge for r in json.loads(Path(path).read_text())]
        args.seeds = sorted({r["seed"] for r in results})
        args.models = [m for m in args.models if any(r["model"] == m for r in results)]
        total = max(r.get("process_s", 0.0) for r in results)
        args.out.mkdir(parents=True, exist_ok=True)
        table = write_results(args.out, results, args, schedule, total)
        plot(args.out, results, args.models)
        print(table)
        print(verdict(results, args.models))
        return
    results = []
    with tempfile.TemporaryDirectory(prefix="nlgcl_twin_") as tmp:
        work = Path(tmp)
        data_dir = work / "data"
        for seed in args.seeds:
            for model in args.models:
                r = run_one(model, args.dataset, seed, schedule, data_dir, work)
                print(
                    f"[{time.perf_counter() - started:6.0f}s] {model:9s} seed {seed}: "
                    f"ndcg@20 {r['metrics']['ndcg@20']:.4f} recall@20 {r['metrics']['recall@20']:.4f} "
                    f"{r['s_per_epoch']:.2f} s/epoch, {r['epochs']} epochs, {r['wall_s']:.0f}s",
                    flush=True,
                )
                r["process_s"] = time.perf_counter() - started
                results.append(r)
    args.out.mkdir(parents=True, exist_ok=True)
    table = write_results(args.out, results, args, schedule, time.perf_counter() - started)
    plot(args.out, results, args.models)
    print(table)
    print(verdict(results, args.models))


if __name__ == "__main__":
    main()
