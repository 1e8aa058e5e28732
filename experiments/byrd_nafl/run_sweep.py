"""Byrd-NAFL on the twins: attacks × aggregators × {no momentum, heavy-ball, Nesterov} × seeds.

    .venv/bin/python experiments/byrd_nafl/run_sweep.py            # full grid (< 20 min on 2 CPU cores)
    .venv/bin/python experiments/byrd_nafl/run_sweep.py --quick    # a smoke-sized grid

Writes ``results.md`` (final test accuracy mean ± std over seeds, rounds to reach the target) and
``curves_<dataset>.png`` next to this file. Each run drives the engine's rounds directly
(``FederatedModule.run_round`` + the strategy's server optimizer, the same code a Lightning training
step runs) without a Trainer, to fit the grid in the time budget.

CPU-sized (stated in results.md): MNIST twin (6,000 train / 1,000 test images from scikit-learn's real
digits) with an MLP 784-64-10 instead of the CNN; 20 clients of which 4 Byzantine; 60 rounds; COVTYPE twin
(20,000 rows) with logistic regression, 35 clients of which 10 Byzantine (Byrd-SAGA's 2/7 ratio at
half the size), 60 rounds; fewer rounds than the paper; 3 attacks x 3 aggregators on MNIST and
2 x 2 on COVTYPE (IPM, label flipping, mimic, Krum, Bulyan, ... are in the engine but left out for time).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from pathlib import Path

import torch

from runner.data.images import CovtypeReader, CovtypeTwin, MNISTDigitsTwin, MNISTReader
from runner.federated import FederatedDataModule, FederatedModule, NonFiniteUpdate
from runner.federated.partition import IID
from runner.methods.byrd_nafl import ByrdNAFL
from runner.models.small import MLP, LogisticRegression

HERE = Path(__file__).resolve().parent
ACCELERATIONS = ("none", "heavy_ball", "nesterov")
DIVERGED: set[tuple[str, str, str, str]] = set()

DATASETS = {
    "mnist": dict(
        reader=MNISTReader,
        twin=lambda: MNISTDigitsTwin(train_size=6000, test_size=1000),
        net=lambda: MLP(784, 10, hidden=(64,)),
        clients=20,
        byzantine_fraction=0.2,
        rounds=60,
        eval_every=5,
        server_lr=0.1,
        batch_size=32,
    ),
    "covtype": dict(
        reader=CovtypeReader,
        twin=lambda: CovtypeTwin(num_rows=20000),
        net=lambda: LogisticRegression(54, 7),
        clients=35,
        byzantine_fraction=10 / 35,
        rounds=60,
        eval_every=5,
        server_lr=0.1,
        batch_size=32,
    ),
}
GRIDS = {
    "mnist": dict(
        attacks=("none", "sign_flip", "alie"),
        aggregators=("mean", "median", "geometric_median"),
    ),
    "covtype": dict(attacks=("sign_flip", "alie"), aggregators=("median", "geometric_median")),
}


def one_run(name, datamodule, attack, aggregator, acceleration, seed, spec):
    torch.manual_seed(seed)
    strategy = ByrdNAFL(
        acceleration=acceleration,
        beta=0.9,
        aggregator=aggregator,
        attack=attack,
        byzantine_fraction=spec["byzantine_fraction"],
        server_lr=spec["server_lr"],
        local_lr=spec["server_lr"],
        batch_size=spec["batch_size"],
    )
    module = FederatedModule(
        spec["net"](), strategy, datamodule.num_classes, execution="sequential", seed=seed
    )
    module.prepare(datamodule)
    optimizer = strategy.configure_server_optimizer(module.net.parameters())
    x_test, y_test = datamodule.splits.x_test, datamodule.splits.y_test
    curve = []
    for r in range(spec["rounds"]):
        try:
            module.step_round(r, optimizer)
        except NonFiniteUpdate:  # the attack drove the model to inf/NaN: count as diverged (accuracy 0)
            curve += [(q, 0.0) for q in range(r + 1, spec["rounds"] + 1) if q % spec["eval_every"] == 0]
            DIVERGED.add((name, attack, aggregator, acceleration))
            break
        if (r + 1) % spec["eval_every"] == 0:
            with torch.no_grad():
                acc = (module.net(x_test).argmax(1) == y_test).float().mean().item()
            curve.append((r + 1, acc if acc == acc else 0.0))
    return curve


def summarise(results, name):
    finals = {k: [c[-1][1] for c in curves] for k, curves in results.items()}
    best = max(statistics.fmean(v) for v in finals.values())
    target = round(0.9 * best, 3)
    lines = [
        f"### {name} (target accuracy {target:.3f} = 90 % of the best mean final accuracy)",
        "",
        "| attack | aggregator | momentum | final acc (mean ± std) | rounds to target (mean; – = not reached by every seed) |",
        "|---|---|---|---|---|",
    ]
    for (attack, aggregator, acceleration), curves in results.items():
        vals = finals[(attack, aggregator, acceleration)]
        std = statistics.stdev(vals) if len(vals) > 1 else 0.0
        hits = [next((r for r, a in c if a >= target), None) for c in curves]
        rounds = f"{statistics.fmean(hits):.0f}" if all(h is not None for h in hits) else "–"
        note = (
            " (diverged: non-finite honest update)"
            if (name, attack, aggregator, acceleration) in DIVERGED
            else ""
        )
        lines.append(
            f"| {attack} | {aggregator} | {acceleration} | {statistics.fmean(vals):.3f} ± {std:.3f}{note} | {rounds} |"
        )
    return "\n".join(lines), target


def plot(results, name, out):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    attacks = sorted({k[0] for k in results})
    aggregators = sorted({k[1] for k in results})
    fig, axes = plt.subplots(
        len(attacks), len(aggregators), figsize=(3.2 * len(aggregators), 2.4 * len(attacks)), squeeze=False
    )
    for (i, attack), (j, aggregator) in itertools.product(enumerate(attacks), enumerate(aggregators)):
        ax = axes[i][j]
        for acceleration in ACCELERATIONS:
            curves = results.get((attack, aggregator, acceleration))
            if not curves:
                continue
            rounds = [r for r, _ in curves[0]]
            mean = [statistics.fmean(c[k][1] for c in curves) for k in range(len(rounds))]
            ax.plot(rounds, mean, label=acceleration)
        ax.set_title(f"{attack} / {aggregator}", fontsize=8)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.supxlabel("round")
    fig.supylabel("test accuracy")
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 20 rounds, 2 attacks x 2 aggregators")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--data-dir", default=str(HERE.parents[1] / "data" / "synthetic"))
    parser.add_argument("--out", default=str(HERE))
    args = parser.parse_args(argv)
    # one thread: on 2 shared cores, two intra-op threads made these small ops ~10x slower (measured)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    started = time.time()
    sections = []
    for name, spec in DATASETS.items():
        spec = dict(spec)
        grid = dict(GRIDS[name])
        seeds = range(1 if args.quick else args.seeds)
        if args.quick:
            spec.update(rounds=20, eval_every=5)
            grid = {k: v[:2] for k, v in grid.items()}
        datamodules = {
            seed: FederatedDataModule(
                reader=spec["reader"],
                synthetic=True,
                synthetic_root=f"{args.data_dir}/{name}",
                twin=spec["twin"](),
                num_clients=spec["clients"],
                partition=IID(),
                seed=seed,
            )
            for seed in seeds
        }
        results = {}
        for attack, aggregator, acceleration in itertools.product(
            grid["attacks"], grid["aggregators"], ACCELERATIONS
        ):
            results[(attack, aggregator, acceleration)] = [
                one_run(name, datamodules[s], attack, aggregator, acceleration, s, spec) for s in seeds
            ]
            print(
                f"[{time.time() - started:6.0f}s] {name} {attack} {aggregator} {acceleration}: "
                f"{statistics.fmean(c[-1][1] for c in results[(attack, aggregator, acceleration)]):.3f}",
                flush=True,
            )
        table, _ = summarise(results, name)
        majority = datamodules[0].splits.y_test.bincount().max().item() / len(datamodules[0].splits.y_test)
        png = f"curves_{name}{'_quick' if args.quick else ''}.png"
        plot(results, name, out / png)
        sections.append(
            f"{table}\n\nTrivial baseline (majority class of the test set): {majority:.3f}. "
            f"{spec['clients']} clients, Byzantine fraction {spec['byzantine_fraction']:.3f}, "
            f"{spec['rounds']} rounds, batch {spec['batch_size']}, η = {spec['server_lr']}, β = 0.9, "
            f"{len(seeds)} seed(s).\n\n![{name} curves]({png})\n"
        )
    header = (
        "# Byrd-NAFL on the twins\n\nProduced by `experiments/byrd_nafl/run_sweep.py"
        + (" --quick" if args.quick else "")
        + f"` in {time.time() - started:.0f} s (2-core CPU).\n"
        "CPU-sized: see the script's docstring (MLP instead of the CNN on MNIST, fewer rounds and clients).\n"
        "Momentum: none = robust SGD, heavy_ball = Polyak momentum at the server, nesterov = Byrd-NAFL's "
        "look-ahead at the server; all with the same aggregator and attack.\n"
    )
    (out / ("results_quick.md" if args.quick else "results.md")).write_text(
        header + "\n" + "\n".join(sections)
    )
    print(header)
    print("\n".join(sections))
    return 0


if __name__ == "__main__":
    sys.exit(main())
