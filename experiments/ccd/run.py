"""CCD on the knowledge-base twin, 3 seeds (3 trained fawning LMs) → ``results.md`` + ``alpha_sweep.png``.

    .venv/bin/python experiments/ccd/run.py                  # seeds 0 1 2, about 15 min on 2 CPU cores
    .venv/bin/python experiments/ccd/run.py --seeds 0 --jobs 1

Each seed is one real run, ``python -m runner experiment=ccd_synthetic seed=<s>``: the tiny GPT-2 is
trained on the twin's dialogues (cached under ``data/lm/<recipe hash>/``; the seed is part of the
recipe), then the test loop decodes every clean / induced item with greedy decoding, CCD, plain
contrastive decoding (no plausibility head) and the neutral-input-only oracle, plus CCD and plain CD
at every α of the sweep. Metrics are read from each run's ``metrics.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
DECODER = "runner.methods.ccd.decoding.ContrastiveDecoding"
MAIN = [
    ("greedy", "greedy"),
    ("ccd", "CCD (α=1, β=0.1)"),
    ("cd", "plain CD (α=1, no head)"),
    ("neutral_oracle", "neutral-input oracle"),
]
TASKS = ("qa", "sentiment", "nli")
PARADIGMS = ("clean", "A", "B")
# chance level of each task (QA: 8 values per attribute; sentiment 2 labels; NLI 3 labels)
CHANCE = {"qa": 1 / 8, "sentiment": 1 / 2, "nli": 1 / 3}


def alpha_key(kind: str, alpha: float) -> str:
    return f"{kind}_alpha_{str(alpha).replace('.', 'p')}"


def run_seed(seed: int, alphas: list[float], out: Path, data_dir: Path) -> dict:
    run_dir = out / f"seed_{seed}"
    overrides = [
        "experiment=ccd_synthetic",
        f"seed={seed}",
        f"paths.data_dir={data_dir}",
        f"hydra.run.dir={run_dir}",
    ]
    for alpha in alphas:
        for kind, head in (("ccd", "true"), ("cd", "false")):
            overrides.append(
                f"+method.decoders.{alpha_key(kind, alpha)}="
                f"{{_target_:{DECODER},alpha:{alpha},beta:0.1,plausibility_head:{head}}}"
            )
    env = dict(os.environ, RUNNER_ROOT=str(REPO), OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    started = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "runner", *overrides], cwd=REPO, env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"seed {seed} failed (exit {proc.returncode})")
    metrics = json.loads((run_dir / "metrics.json").read_text())["metrics"]
    print(f"seed {seed}: {time.time() - started:.0f}s", flush=True)
    return metrics


def mean_std(values: list[float]) -> str:
    mean = statistics.mean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{100 * mean:.1f} ± {100 * std:.1f}"


def collect(runs: list[dict], key: str) -> list[float]:
    return [float(r[f"test/{key}"]) for r in runs if f"test/{key}" in r]


def write_results(
    runs: list[dict], alphas: list[float], seeds: list[int], wall: float, seed_walls: list[float], out: Path
) -> None:
    lines = [
        "# CCD on the knowledge-base twin (in-project fawning LM)",
        "",
        f"Produced by `experiments/ccd/run.py` (seeds {' '.join(map(str, seeds))}; one trained tiny GPT-2 per",
        f"seed; wall time {'not measured (--report-only)' if math.isnan(wall) else f'{wall / 60:.1f} min'} on a 2-core "
        f"CPU shared with other jobs; per-seed run times "
        f"{', '.join(f'{w:.0f} s' for w in seed_walls)} — a run whose LM is already cached under data/lm/ skips "
        "training). Mean ± std over seeds, in %.",
        "Induced = paradigm A (misleading user assertion) and B (fabricated context) pooled over QA,",
        "sentiment and NLI; fawning rate = share of induced items answered with the pushed wrong answer.",
        "",
        "| decoder | clean acc | induced acc | fawning rate | A: acc / fawning | B: acc / fawning |",
        "|---|---|---|---|---|---|",
    ]
    chance_clean = statistics.mean(CHANCE.values())
    lines.append(
        f"| chance (per task, averaged) | {100 * chance_clean:.1f} | {100 * chance_clean:.1f} | – | – | – |"
    )
    for key, label in MAIN:
        lines.append(
            f"| {label} | {mean_std(collect(runs, f'{key}/clean_acc'))} | {mean_std(collect(runs, f'{key}/induced_acc'))} "
            f"| {mean_std(collect(runs, f'{key}/fawning_rate'))} "
            f"| {mean_std(collect(runs, f'{key}/paradigm_A/acc'))} / {mean_std(collect(runs, f'{key}/paradigm_A/fawning'))} "
            f"| {mean_std(collect(runs, f'{key}/paradigm_B/acc'))} / {mean_std(collect(runs, f'{key}/paradigm_B/fawning'))} |"
        )
    lines += ["", "## Per task and paradigm (accuracy / fawning rate, %)", ""]
    header = "| decoder | " + " | ".join(f"{t} {p}" for t in TASKS for p in PARADIGMS) + " |"
    lines += [header, "|---|" + "---|" * (len(TASKS) * len(PARADIGMS))]
    for key, label in MAIN:
        cells = []
        for task in TASKS:
            for paradigm in PARADIGMS:
                acc = statistics.mean(collect(runs, f"{key}/{task}/{paradigm}/acc"))
                cell = f"{100 * acc:.0f}"
                if paradigm != "clean":
                    cell += (
                        f" / {100 * statistics.mean(collect(runs, f'{key}/{task}/{paradigm}/fawning')):.0f}"
                    )
                cells.append(cell)
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## α sweep (β = 0.1; induced / clean accuracy, %)",
        "",
        "| α | CCD induced | CCD clean | plain CD induced | plain CD clean |",
        "|---|---|---|---|---|",
    ]
    for alpha in alphas:
        row = [
            mean_std(collect(runs, f"{alpha_key(k, alpha)}/{m}"))
            for k in ("ccd", "cd")
            for m in ("induced_acc", "clean_acc")
        ]
        lines.append(f"| {alpha} | " + " | ".join(row) + " |")
    lines += ["", "## Verdict", "", *verdict(runs), ""]
    (out / "results.md").write_text("\n".join(lines))


def verdict(runs: list[dict]) -> list[str]:
    def m(key):
        return statistics.mean(collect(runs, key))

    out = []
    clean, induced = m("greedy/clean_acc"), m("greedy/induced_acc")
    if induced < clean - 0.2:
        out.append(
            f"- The LM fawns: with greedy decoding induced accuracy is {100 * induced:.1f} % against "
            f"{100 * clean:.1f} % on clean inputs (fawning rate {100 * m('greedy/fawning_rate'):.1f} %)."
        )
    else:
        out.append(
            f"- The LM does NOT fawn enough: greedy induced {100 * induced:.1f} % vs clean {100 * clean:.1f} %."
        )
    gain = m("ccd/induced_acc") - induced
    out.append(
        f"- CCD {'raises' if gain > 0 else 'does not raise'} induced accuracy: {100 * induced:.1f} → "
        f"{100 * m('ccd/induced_acc'):.1f} % ({100 * gain:+.1f} points); fawning rate "
        f"{100 * m('greedy/fawning_rate'):.1f} → {100 * m('ccd/fawning_rate'):.1f} %."
    )
    delta = m("ccd/clean_acc") - clean
    out.append(
        f"- Clean accuracy changes by {100 * delta:+.1f} points (card: not hurt by more than one). On clean "
        "inputs the neutraliser finds nothing to remove, so both branches see the same text and CCD reduces "
        "to greedy decoding exactly."
    )
    out.append(
        f"- Plain CD without the plausibility head: induced {100 * m('cd/induced_acc'):.1f} %, clean "
        f"{100 * m('cd/clean_acc'):.1f} %; the neutral-input oracle: induced {100 * m('neutral_oracle/induced_acc'):.1f} %."
    )
    big = max(runs[0].get("alphas", [4.0]))
    cd_big, ccd_big = m(f"{alpha_key('cd', big)}/induced_acc"), m(f"{alpha_key('ccd', big)}/induced_acc")
    out.append(
        f"- At α = {big} plain CD falls to {100 * cd_big:.1f} % induced accuracy while CCD keeps "
        f"{100 * ccd_big:.1f} %: without the head, candidates the neutral branch finds implausible win "
        "whenever the induced branch finds them even less likely (the head's purpose, as in CD / VCD)."
    )
    if m("ccd/induced_acc") > m("neutral_oracle/induced_acc"):
        out.append(
            "- CCD beats the neutral-input oracle on induced items. This is an artefact of the twin worth "
            "knowing: the pushed answer is wrong by construction, and the contrast demotes exactly the answer "
            "the induced branch favours, which helps where the neutral branch is unsure (NLI, whose clean "
            "accuracy is the lowest); on real data a user's assertion can also be right."
        )
    out.append(
        "- Caveats: the neutraliser is built from the same templates that induce (on the twin it recovers the "
        "clean input exactly, so the neutral branch equals the clean one); the LM is trained on those "
        "templates. Real-data behaviour depends on how well the rule-based neutraliser strips real inductions."
    )
    return out


def plot(runs: list[dict], alphas: list[float], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for kind, label, style in (("ccd", "CCD", "-o"), ("cd", "plain CD (no head)", "--s")):
        for metric, colour in (("induced_acc", "tab:red"), ("clean_acc", "tab:blue")):
            values = [[100 * v for v in collect(runs, f"{alpha_key(kind, a)}/{metric}")] for a in alphas]
            means = [statistics.mean(v) for v in values]
            errs = [statistics.stdev(v) if len(v) > 1 else 0 for v in values]
            ax.errorbar(
                alphas,
                means,
                yerr=errs,
                fmt=style,
                color=colour,
                label=f"{label}, {metric.split('_')[0]}",
                capsize=3,
            )
    ax.set_xlabel("α")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("CCD α sweep on the fawning twin (β = 0.1)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "alpha_sweep.png", dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.0, 0.5, 1.0, 2.0, 4.0])
    parser.add_argument("--jobs", type=int, default=2, help="seeds run in parallel (1 thread each)")
    parser.add_argument("--data-dir", type=Path, default=REPO / "data")
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite results from the last runs' metrics.json"
    )
    args = parser.parse_args()
    runs_dir = REPO / "logs" / "ccd_experiment"
    started = time.time()
    if args.report_only:
        payloads = [json.loads((runs_dir / f"seed_{s}" / "metrics.json").read_text()) for s in args.seeds]
        runs = [p["metrics"] for p in payloads]
        seed_walls = [p["wall_time_s"] for p in payloads]
        wall = float("nan")  # not measured: the table is rewritten from earlier runs
    else:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            runs = list(pool.map(lambda s: run_seed(s, args.alphas, runs_dir, args.data_dir), args.seeds))
        wall = time.time() - started
        seed_walls = [
            json.loads((runs_dir / f"seed_{s}" / "metrics.json").read_text())["wall_time_s"]
            for s in args.seeds
        ]
    for r in runs:
        r["alphas"] = args.alphas
    args.out.mkdir(parents=True, exist_ok=True)
    write_results(runs, args.alphas, args.seeds, wall, seed_walls, args.out)
    plot(runs, args.alphas, args.out)
    print((args.out / "results.md").read_text())


if __name__ == "__main__":
    main()
