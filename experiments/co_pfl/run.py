"""CO-PFL vs personalised-FL baselines and its ablations on the CIFAR-10 twin (card papers/co_pfl.md).

    .venv/bin/python experiments/co_pfl/run.py               # 3 seeds, all methods (~25 min on 2 CPU cores)
    .venv/bin/python experiments/co_pfl/run.py --quick       # 1 seed, few rounds (smoke)

Every run is ``python -m runner experiment=co_pfl_cifar10 fl_strategy=<name> seed=<s>`` composed
in-process (runner.compose.compose_run_config) plus the CPU-size overrides below; the rounds are driven
directly (``FederatedModule.run_round`` + the strategy's server optimizer + ``server_update``, the code a
Lightning training step runs) without a Trainer, to fit the sweep in the time budget. The metric is
the personalised accuracy (each client's personalised model on its own held-out split, mean over
clients = ``test/personal_acc``) after the last round; ``results.md`` gives mean ± std over seeds and
``results.png`` the curves.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from hydra.utils import instantiate

from runner.compose import compose_run_config

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

METHODS = [  # (fl_strategy config, label)
    ("co_pfl", "CO-PFL (PWPM + COWA + MAMO)"),
    ("fedavg_ft", "FedAvg + fine-tune"),
    ("fedper", "FedPer"),
    ("fedrep", "FedRep"),
    ("ditto", "Ditto"),
    ("apfl", "APFL (learned α)"),
    ("fedala", "FedALA"),
    ("co_pfl_no_contribution", "CO-PFL w/o contribution weights"),
    ("co_pfl_no_mask", "CO-PFL w/o mask"),
    ("co_pfl_no_mamo", "CO-PFL w/o mask-aware momentum"),
]

# CPU-sized twins: sizes only (the experiments' semantics are unchanged)
EXPERIMENT_OVERRIDES = {
    "co_pfl_cifar10": ["dataset.twin.train_per_class=200", "dataset.twin.test_per_class=20"],
    # 4 corruptions x severity 5, 500 twin test images each -> 1,600 train / 400 global test images
    "co_pfl_cifar10c": ["dataset.reader.corruptions=[gaussian_noise,defocus_blur,contrast,pixelate]"],
}
SIZE_OVERRIDES = [
    "dataset.num_clients=10",
    "model.channels=[8,16]",
    "model.hidden=64",
    "fl_strategy.local_steps=5",
    "fl_strategy.local_epochs=null",  # the experiments now default to 1 local epoch
]
# the same local budget for every method: FedRep's head phase and FedAvg+FT's fine-tuning take
# local_steps steps too
METHOD_OVERRIDES = {"fedrep": ["fl_strategy.head_steps=5"], "fedavg_ft": ["fl_strategy.finetune_steps=5"]}


def build(overrides: list[str], run_dir: Path, data_dir: Path):
    from runner.train import accepted_kwargs, build_networks, data_properties

    cfg = compose_run_config(overrides, output_dir=run_dir, root_dir=REPO, data_dir=data_dir, log_dir=run_dir)
    torch.manual_seed(int(cfg.seed))
    datamodule = instantiate(cfg.dataset)
    properties = data_properties(datamodule)
    networks = build_networks(cfg, properties)
    module = instantiate(cfg.method, **networks, **accepted_kwargs(cfg.method, properties))
    module.execution = "sequential"
    module.prepare(datamodule)
    return cfg, module


def cached_run(experiment: str, strategy: str, seed: int, args) -> list[tuple[int, float]]:
    """``one_run``'s curve, reused from ``runs/<experiment>/<strategy>_seed<seed>.json`` when that file
    was written by a run with the same overrides and rounds (so a sweep can be resumed / extended)."""
    path = Path(args.out) / args.runs / experiment / f"{strategy}_seed{seed}.json"
    key = {"overrides": run_overrides(experiment, strategy, seed, args), "rounds": args.rounds}
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("key") == key:
            return [tuple(p) for p in saved["curve"]]
    started = time.time()
    curve = one_run(experiment, strategy, seed, args)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": key, "curve": curve, "seconds": round(time.time() - started, 1)}))
    return curve


def total_seconds(args) -> float:
    """Training seconds of every cached run behind results.md."""
    return sum(
        json.loads(p.read_text()).get("seconds", 0.0) for p in (Path(args.out) / args.runs).glob("*/*.json")
    )


def run_overrides(experiment: str, strategy: str, seed: int, args) -> list[str]:
    return [
        f"experiment={experiment}",
        f"fl_strategy={strategy}",
        f"seed={seed}",
        *EXPERIMENT_OVERRIDES.get(experiment, []),
        *SIZE_OVERRIDES,
        *METHOD_OVERRIDES.get(strategy, []),
        *args.set,
    ]


def one_run(experiment: str, strategy: str, seed: int, args) -> list[tuple[int, float]]:
    overrides = run_overrides(experiment, strategy, seed, args)
    _, module = build(
        overrides, Path(args.out) / args.runs / experiment / f"{strategy}_seed{seed}", Path(args.data_dir)
    )
    optimizer = module.strategy.configure_server_optimizer(module.net.parameters())
    curve = []
    for r in range(args.rounds):
        module.step_round(r, optimizer)
        if (r + 1) % args.eval_every == 0 or r + 1 == args.rounds:
            curve.append((r + 1, module.personalised_accuracy().mean().item()))
    return curve


def summarise(results: dict, args, seconds: float, experiment: str) -> str:
    finals = {m: [c[-1][1] for c in curves] for m, curves in results.items()}
    mean = {m: statistics.fmean(v) for m, v in finals.items()}
    std = {m: (statistics.stdev(v) if len(v) > 1 else 0.0) for m, v in finals.items()}
    labels = dict(METHODS)
    baselines = [m for m in results if not m.startswith("co_pfl")]
    best = max(baselines, key=mean.get) if baselines else None
    lines = [
        f"### {experiment} (personalised accuracy after {args.rounds} rounds, mean ± std over {len(args.seeds)} seeds)",
        "",
        f"Overrides: {EXPERIMENT_OVERRIDES.get(experiment, []) + SIZE_OVERRIDES + args.set}; "
        f"per method {METHOD_OVERRIDES}.",
        "",
        "| method | fl_strategy | personal acc | per seed |",
        "|---|---|---|---|",
    ]
    for m in results:
        seeds = ", ".join(f"{v:.3f}" for v in finals[m])
        lines.append(f"| {labels[m]} | `{m}` | {mean[m]:.3f} ± {std[m]:.3f} | {seeds} |")
    if best is not None and "co_pfl" in mean:
        verdict = "holds" if mean["co_pfl"] >= mean[best] else "does NOT hold"
        paired = ", ".join(f"{a - b:+.3f}" for a, b in zip(finals["co_pfl"], finals[best], strict=True))
        lines += [
            "",
            f'Card claim "CO-PFL ≥ best baseline": best baseline {labels[best]} {mean[best]:.3f}; '
            f"CO-PFL {mean['co_pfl']:.3f} → the claim {verdict} on this twin (mean over seeds; "
            f"difference {mean['co_pfl'] - mean[best]:+.3f}, seed std ≈ {std['co_pfl']:.3f} / {std[best]:.3f}; "
            f"per-seed differences {paired}).",
        ]
    return "\n".join(lines)


def plot(results: dict, out: Path, experiment: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = dict(METHODS)
    fig, ax = plt.subplots(figsize=(7, 4))
    for m, curves in results.items():
        rounds = [r for r, _ in curves[0]]
        mean = [statistics.fmean(c[k][1] for c in curves) for k in range(len(rounds))]
        ax.plot(rounds, mean, label=labels[m], linestyle="--" if m.startswith("co_pfl_") else "-")
    ax.set_xlabel("round")
    ax.set_ylabel("personalised accuracy (mean over clients)")
    ax.set_title(experiment)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 6 rounds")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=25)
    parser.add_argument("--eval-every", type=int, default=5)
    parser.add_argument("--experiments", nargs="+", default=["co_pfl_cifar10"])
    parser.add_argument("--methods", nargs="+", default=[m for m, _ in METHODS])
    parser.add_argument("--set", nargs="*", default=[], help="extra Hydra overrides for every run")
    parser.add_argument("--data-dir", default=str(REPO / "data" / "co_pfl"))  # its own twin cache
    parser.add_argument("--out", default=str(HERE))
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.rounds, args.eval_every = [0], 6, 3
    args.runs = "runs_quick" if args.quick else "runs"  # a quick run never replaces the full runs' cache
    torch.set_num_threads(1)  # 2 shared cores: small ops are fastest single-threaded
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    sections = []
    for experiment in args.experiments:
        results = {}
        for method in args.methods:
            results[method] = []
            for seed in args.seeds:
                t0 = time.time()
                results[method].append(cached_run(experiment, method, seed, args))
                print(
                    f"[{time.time() - started:6.0f}s] {experiment} {method} seed {seed}: "
                    f"{results[method][-1][-1][1]:.3f} ({time.time() - t0:.0f}s)",
                    flush=True,
                )
        suffix = "_quick" if args.quick else ""
        png = f"{experiment}{suffix}.png"
        plot(results, out / png, experiment)
        sections.append(
            summarise(results, args, time.time() - started, experiment) + f"\n\n![curves]({png})\n"
        )
    header = (
        "# CO-PFL on the twins\n\nProduced by `experiments/co_pfl/run.py"
        + (" --quick" if args.quick else "")
        + f"` (this invocation {time.time() - started:.0f} s; the runs below took {total_seconds(args):.0f} s "
        "of training in all, 2-core shared CPU).\n\n"
        f"Setting: {args.rounds} rounds, every client every round; overrides {SIZE_OVERRIDES + args.set}, "
        f"per experiment {EXPERIMENT_OVERRIDES}, per method {METHOD_OVERRIDES}. Each section lists its "
        "runs' settings; cached runs (runs/<experiment>/*.json) are reused when their overrides match.\n"
    )
    # one section file per experiment; results.md holds every experiment's section written so far
    for experiment, section in zip(args.experiments, sections, strict=True):
        (out / args.runs / experiment / f"section{'_quick' if args.quick else ''}.md").write_text(section)
    sections = [
        p.read_text() for p in sorted((out / args.runs).glob(f"*/section{'_quick' if args.quick else ''}.md"))
    ]
    text = header + "\n" + "\n".join(sections)
    (out / f"results{'_quick' if args.quick else ''}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
