"""FedSM on the semantic CIFAR-10-LT twin: FedAvg, FedProx, retraining without semantics, FedSM.

    .venv/bin/python experiments/fedsm/run.py --seeds 5  # IF 100 and IF 10 (results.md: ~12 min on 2 CPU cores)
    .venv/bin/python experiments/fedsm/run.py --quick    # 1 seed, IF 100, fewer rounds (smoke)
    .venv/bin/python experiments/fedsm/run.py --from-json experiments/fedsm/results.json   # re-render only

Writes ``results.md`` (overall and many / medium / few-shot test accuracy, mean ± std over seeds),
``accuracy.png`` and ``results.json`` (every run's metrics, from which ``--from-json`` re-renders) next
to this file.

Every run's config is composed from the repository's configs (``experiment=fedsm_cifar10lt`` plus
``fl_strategy=...`` and the CPU-sized overrides below, :func:`runner.compose.compose_run_config`) and
built with ``hydra.utils.instantiate`` as ``python -m runner`` builds it; the rounds are driven directly
(``FederatedModule.run_round`` → server optimizer step → ``strategy.server_update``, the code a
Lightning training step runs) without a Trainer, to fit the budget.

One FedSM run per seed gives four of the five rows on the *same* backbone, which is exact because
FedSM's backbone is FedAvg (tests/fl_methods/test_fedsm_strategy.py checks FedSM's rounds equal the
``fl_strategy=fedavg`` config's): **FedAvg** = that run's global model (its FedAvg-trained classifier),
**FedSM** = the strategy's averaged semantics-retrained classifier, and two more strategies whose server
hooks run on the same rounds and backbone: **retrain w/o semantics** (``fl_strategy=fedsm_no_semantics``:
uniform category selection; the card's ablation, not CReFF) and **FedSM, sharpened selection**
(``fl_strategy.selection_temperature=0.05``: draws ∝ exp(S/T) instead of ∝ S, an exploration beyond the
card testing whether the text encoder's flat similarities are why semantics matter little here).
**FedProx** is its own run.

CPU-sized (stated in results.md): an MLP 3072-128-64-10 instead of ResNet-8 (one ResNet-8 step of batch
32 took ~0.12 s on this shared 2-core machine vs ~5 ms for the MLP); the twin has 500 training images
per class before the long-tail subsampling (IF 100 → 500 … 5 per class) and 100 test images per class;
40 rounds of 20 local steps (the card: 200 rounds of 10 local epochs); FedSM's pseudo-features per
class and client scaled with the client size (10 of ~60 samples per client, the card's 100 of ~620).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate

from runner.compose import compose_run_config
from runner.train import accepted_kwargs, build_networks, data_properties

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
METHODS = ("fedavg", "fedprox", "retrain_no_semantics", "fedsm", "fedsm_sharp")
LABELS = {
    "fedavg": "FedAvg",
    "fedprox": "FedProx (μ = 0.01)",
    "retrain_no_semantics": "retrain w/o semantics (ablation)",
    "fedsm": "FedSM",
    "fedsm_sharp": "FedSM, sharpened selection T = 0.05 (beyond the card)",
}
# strategies whose server hook runs beside FedSM's on the same rounds and backbone: (config, overrides)
SHADOWS = {
    "retrain_no_semantics": ("fedsm_no_semantics", []),
    "fedsm_sharp": ("fedsm", ["fl_strategy.selection_temperature=0.05"]),
}
GROUPS = ("overall", "many", "medium", "few")
NEIGHBOUR: torch.Tensor | None = None  # each class's semantic nearest neighbour (off-diagonal argmax of S)
RELEVANCE: torch.Tensor | None = None  # S of the class names
NAMES: list[str] = []


def compose(strategy: str, seed: int, imbalance: float, spec: dict, data_dir: str, out: Path, extra=()):
    overrides = [
        "experiment=fedsm_cifar10lt",
        f"fl_strategy={strategy}",
        f"seed={seed}",
        f"dataset.partition.imbalance_factor={imbalance}",
        "model=fl_mlp",
        "model.hidden=[128,64]",
        f"fl_strategy.local_steps={spec['local_steps']}",
        "fl_strategy.local_epochs=null",  # the experiments now default to local epochs
        "fl_strategy.clients_per_round=8",
        "fl_strategy.local_lr=0.1",
        "fl_strategy.batch_size=32",
        "method.execution=sequential",
    ]
    if strategy.startswith("fedsm"):
        overrides.append(f"fl_strategy.total_rounds={spec['rounds']}")
        overrides.append(f"fl_strategy.per_class={spec['per_class']}")
    if strategy == "fedprox":
        overrides.append("fl_strategy.mu=0.01")
    overrides += list(extra)
    return compose_run_config(overrides, output_dir=out, root_dir=REPO, data_dir=data_dir)


def build(cfg):
    datamodule = instantiate(cfg.dataset)
    properties = data_properties(datamodule)
    module = instantiate(
        cfg.method, **build_networks(cfg, properties), **accepted_kwargs(cfg.method, properties)
    )
    module.prepare(datamodule)
    if hasattr(module.strategy, "class_names"):  # no Trainer: FedSM is told the names directly
        module.strategy.class_names = list(datamodule.splits.class_names)
    return datamodule, module


@torch.no_grad()
def evaluate(module, datamodule, flat) -> dict[str, float]:
    x, y = datamodule.splits.x_test, datamodule.splits.y_test
    pred = torch.cat([module.forward_flat(flat, chunk).argmax(1) for chunk in x.split(1000)])
    per_class = torch.stack([(pred[y == c] == c).float().mean() for c in range(module.num_classes)])
    out = {"overall": float((pred == y).float().mean())}
    groups = datamodule.class_groups()
    for name, classes in groups.items():
        out[name] = float(per_class[classes].mean())
    # where the few-shot classes' errors go: the share landing on the class's semantic neighbour
    few = torch.isin(y, torch.tensor(groups["few"])) & (pred != y)
    out["few_errors_to_neighbour"] = (
        float((pred[few] == NEIGHBOUR[y[few]]).float().mean()) if few.any() else 0.0
    )
    return out


def drive(module, rounds: int, shadows=()):
    """Run ``rounds`` rounds; the shadow strategies' hooks run on the same rounds and backbone."""
    strategy = module.strategy
    optimizer = strategy.configure_server_optimizer(module.net.parameters())
    for r in range(rounds):
        module.step_round(r, optimizer)
        for shadow in shadows:
            shadow.server_update(module, r)


def one_seed(
    seed: int, imbalance: float, spec: dict, data_dir: str, scratch: Path
) -> dict[str, dict[str, float]]:
    torch.manual_seed(seed)
    cfg = compose("fedsm", seed, imbalance, spec, data_dir, scratch / f"fedsm_{imbalance}_{seed}")
    datamodule, module = build(cfg)
    shadows = {}
    for key, (strategy, extra) in SHADOWS.items():
        shadow_cfg = compose(strategy, seed, imbalance, spec, data_dir, scratch / key, extra)
        shadow = shadows[key] = instantiate(shadow_cfg.fl_strategy)
        shadow.class_names = list(datamodule.splits.class_names)
        shadow.setup(datamodule.num_clients, module.global_flat(), module.layout.mask([]), seed)
    drive(module, spec["rounds"], list(shadows.values()))
    flat = module.global_flat()
    results = {
        "fedavg": evaluate(module, datamodule, flat),
        "fedsm": evaluate(module, datamodule, module.strategy.evaluation_parameters(module, flat)),
    }
    for key, shadow in shadows.items():
        results[key] = evaluate(module, datamodule, shadow.evaluation_parameters(module, flat))
    torch.manual_seed(seed)
    cfg = compose("fedprox", seed, imbalance, spec, data_dir, scratch / f"fedprox_{imbalance}_{seed}")
    datamodule, module = build(cfg)
    drive(module, spec["rounds"])
    results["fedprox"] = evaluate(module, datamodule, module.global_flat())
    return results, datamodule


def selection_shares(counts: list[int], few: list[int]) -> str:
    """How much semantic selection favours a few-shot class's neighbour: the chance that one draw is a
    neighbour's feature, semantic (∝ S[c, y_j]) vs uniform, for a client holding the global counts."""
    n = torch.tensor(counts, dtype=torch.float64)
    parts = []
    for c in few:
        nb = int(NEIGHBOUR[c])
        w = RELEVANCE[c].double().clamp_min(1e-6) * n
        parts.append(
            f"{NAMES[c]} ← {NAMES[nb]}: {float(w[nb] / w.sum()):.2f} vs {float(n[nb] / n.sum()):.2f}"
        )
    return "; ".join(parts)


def table(runs: list[dict], imbalance: float, counts) -> str:
    lines = [
        f"### CIFAR-10-LT twin, imbalance factor {imbalance:g} (training images per class: {counts})",
        "",
        "| method | overall | many-shot | medium-shot | few-shot | few-shot errors on the semantic neighbour |",
        "|---|---|---|---|---|---|",
    ]
    for m in METHODS:
        cells = []
        for g in (*GROUPS, "few_errors_to_neighbour"):
            vals = [r[m][g] for r in runs]
            std = statistics.stdev(vals) if len(vals) > 1 else 0.0
            cells.append(f"{statistics.fmean(vals):.3f} ± {std:.3f}")
        lines.append(f"| {LABELS[m]} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "Per seed, few-shot accuracy: "
        + "; ".join(f"{LABELS[m]} " + ", ".join(f"{r[m]['few']:.3f}" for r in runs) for m in METHODS)
        + "."
    )
    lines.append("")
    paired = []
    for m, ref in (
        ("fedsm", "fedavg"),
        ("fedsm", "retrain_no_semantics"),
        ("fedsm_sharp", "retrain_no_semantics"),
    ):
        diffs = [r[m]["few"] - r[ref]["few"] for r in runs]
        std = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
        wins = sum(d > 0 for d in diffs)
        paired.append(
            f"{LABELS[m]} − {LABELS[ref]}: {statistics.fmean(diffs):+.3f} ± {std:.3f} "
            f"(higher in {wins} of {len(diffs)} seeds)"
        )
    lines.append("Paired few-shot differences (same backbone and seed): " + "; ".join(paired) + ".")
    lines.append("")
    verdicts = []
    for ref in ("fedavg", "retrain_no_semantics"):
        diffs = [r["fedsm"]["few"] - r[ref]["few"] for r in runs]
        std = statistics.stdev(diffs) if len(diffs) > 1 else 0.0
        clear = all(d > 0 for d in diffs) and statistics.fmean(diffs) > std
        verdicts.append(
            f"over {LABELS[ref]}: "
            + ("reproduced" if clear else "not reproduced (within seed-to-seed noise)")
        )
    lines.append(
        "Card's claim (FedSM beats FedAvg and retraining without semantics on few-shot classes; "
        "'reproduced' = higher in every seed and mean gain > its std): " + "; ".join(verdicts) + "."
    )
    lines.append("")
    lines.append(
        "Share of a few-shot class's mixed-in local features drawn from its semantic neighbour, semantic vs "
        "uniform selection (expected, for a client holding the global class counts): "
        + selection_shares(counts, sorted(int(c) for c in np.argsort(counts, kind="stable")[:3]))
        + "."
    )
    return "\n".join(lines)


def plot(all_runs: dict, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(all_runs), figsize=(5.5 * len(all_runs), 3.9), squeeze=False)
    width = 0.8 / len(METHODS)
    for ax, (imbalance, runs) in zip(axes[0], all_runs.items(), strict=True):
        for i, m in enumerate(METHODS):
            means = [statistics.fmean(r[m][g] for r in runs) for g in GROUPS]
            stds = [statistics.stdev([r[m][g] for r in runs]) if len(runs) > 1 else 0.0 for g in GROUPS]
            xs = [k + (i - (len(METHODS) - 1) / 2) * width for k in range(len(GROUPS))]
            ax.bar(xs, means, width, yerr=stds, label=LABELS[m], capsize=2)
        ax.set_xticks(range(len(GROUPS)), GROUPS)
        ax.set_ylim(0, 1)
        ax.set_title(f"CIFAR-10-LT twin, IF {imbalance:g} ({len(runs)} seeds)", fontsize=9)
        ax.set_ylabel("test accuracy")
        ax.grid(axis="y", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7)
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    fig.savefig(out, dpi=90)
    plt.close(fig)


def relevance_note(data_dir: str, scratch: Path) -> str:
    """The class-name relevance's two nearest names per class; sets :data:`NEIGHBOUR`."""
    global NEIGHBOUR, RELEVANCE, NAMES
    from runner.methods.fedsm.semantics import semantic_relevance
    from runner.methods.fedsm.strategy import class_name_embeddings

    cfg = compose(
        "fedsm", 0, 100, {"local_steps": 1, "rounds": 1, "per_class": 1}, data_dir, scratch / "relevance"
    )
    names = list(instantiate(cfg.dataset).splits.class_names)
    s = semantic_relevance(class_name_embeddings(instantiate(cfg.fl_strategy.text_encoder), names, None))
    off = s - 2 * torch.eye(len(names))
    NEIGHBOUR, RELEVANCE, NAMES = off.argmax(1), s, names
    rows = []
    for c, name in enumerate(names):
        top = off[c].argsort(descending=True)[:2].tolist()
        rows.append(f"{name} → {names[top[0]]} ({s[c, top[0]]:.2f}), {names[top[1]]} ({s[c, top[1]]:.2f})")
    return "; ".join(rows)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, IF 100, 20 rounds")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--imbalance", type=float, nargs="+", default=[100.0, 10.0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--local-steps", type=int, default=20)
    parser.add_argument("--per-class", type=int, default=10, help="pseudo-features per class and client")
    parser.add_argument(
        "--from-json", help="re-render results.md / PNG from a results.json this script wrote (no training)"
    )
    parser.add_argument("--data-dir", default=str(REPO / "data"))
    parser.add_argument("--out", default=str(HERE))
    args = parser.parse_args(argv)
    # one thread: on 2 shared cores more intra-op threads made these small ops slower
    torch.set_num_threads(1)
    spec = {"rounds": args.rounds, "local_steps": args.local_steps, "per_class": args.per_class}
    seeds = range(args.seeds)
    imbalances = args.imbalance
    if args.quick:
        spec["rounds"], seeds, imbalances = 20, range(1), [100.0]
    out = Path(args.out)
    scratch = out / ".runs"
    started = time.time()
    note = relevance_note(args.data_dir, scratch)
    all_runs, sections = {}, []
    if args.from_json:
        raw = json.loads(Path(args.from_json).read_text())
        spec, seconds = raw["spec"], raw["seconds"]
        all_runs = {float(k): v for k, v in raw["runs"].items()}
    for imbalance in imbalances if not args.from_json else all_runs:
        runs = all_runs.get(imbalance, [])
        for seed in seeds if not args.from_json else ():
            result, _ = one_seed(seed, imbalance, spec, args.data_dir, scratch)
            runs.append(result)
            print(
                f"[{time.time() - started:6.0f}s] IF {imbalance:g} seed {seed}: "
                + ", ".join(f"{m} {result[m]['overall']:.3f}/{result[m]['few']:.3f}" for m in METHODS),
                flush=True,
            )
        datamodule = instantiate(
            compose("fedsm", 0, imbalance, spec, args.data_dir, scratch / "counts").dataset
        )
        datamodule.setup()
        kept = torch.from_numpy(np.concatenate(datamodule.parts))
        counts = datamodule.splits.y_train[kept].bincount(minlength=10).tolist()
        all_runs[imbalance] = runs
        sections.append(table(runs, imbalance, counts))
    if not args.from_json:
        seconds = time.time() - started
    suffix = "_quick" if args.quick else ""
    png = f"accuracy{suffix}.png"
    plot(all_runs, out / png)
    groups = datamodule.class_groups()
    names = datamodule.splits.class_names
    header = (
        "# FedSM on the semantic CIFAR-10-LT twin\n\n"
        f"Produced by `experiments/fedsm/run.py{' --quick' if args.quick else ''}`: runs took "
        f"{seconds:.0f} s (shared 2-core CPU). Test accuracy of the final model "
        "(mean ± std over seeds; seeds change the partition, the initialisation and every draw).\n\n"
        "Setting: `experiment=fedsm_cifar10lt` (20 clients, LongTailDirichlet, Dirichlet α = 0.5, 8 clients "
        f"per round, lr 0.1, batch 32, weighted FedAvg) with CPU-sized overrides: {spec['rounds']} rounds × "
        f"{spec['local_steps']} local steps, an MLP 3072-128-64-10 instead of ResNet-8 (see the script's "
        "docstring); FedSM and its ablation retrain in the last 20 % of the rounds "
        f"(from round {int(spec['rounds'] - round(0.2 * spec['rounds']))}), {spec['per_class']} pseudo-features "
        "per class and client (the card's 100 of ~620 samples per client, scaled to the twin's ~60), "
        "λ ~ U[0.35, 0.95], 10 classifier epochs; text "
        "encoder: the offline all-MiniLM-L6-v2 (a substitute for CLIP's text tower).\n\n"
        "Class groups (terciles by training count): "
        + "; ".join(f"{g}: {', '.join(names[c] for c in cls)}" for g, cls in groups.items())
        + ".\n\nLast column: of the few-shot classes' misclassified test images, the share predicted as the "
        "class's semantic nearest neighbour by the MiniLM relevance (1/9 if errors were spread evenly).\n\n"
        "Trivial baseline: chance / majority class = 0.100 (balanced test set, 100 images per class).\n\n"
        "MiniLM class-name relevance (two nearest names, off-diagonal S): " + note + ".\n"
    )
    notes = (
        "## Reading\n\n"
        "* Retraining the classifier on real + pseudo-features (both variants) is what lifts the few-shot "
        "classes over FedAvg / FedProx; FedAvg's classifier is biased to the head classes.\n"
        "* The twin does carry the structure semantics could exploit: FedAvg's few-shot errors land on the "
        "class's semantic neighbour far more often than the 1/9 of evenly spread errors (last column).\n"
        "* But the card's selection weights ∝ S barely change which local features are mixed in: the "
        "text-encoder similarities are flat (MiniLM 0.2–0.67 on these names), so a few-shot class draws its "
        "neighbour's features only ~1.3–1.4× as often as under uniform selection (the 'Share' lines). The sharpened "
        "selection (∝ exp(S/0.05), beyond the card) tests whether stronger semantic selection matters.\n"
        f"* CPU-sized: MLP features on a procedural twin, {spec['rounds']} rounds, "
        f"{len(next(iter(all_runs.values())))} seeds; differences of a few points "
        "between the retraining variants are within the seed-to-seed spread.\n"
    )
    text = header + "\n" + "\n\n".join(sections) + f"\n\n![accuracy by class group]({png})\n\n" + notes
    (out / f"results{suffix}.md").write_text(text)
    if not args.from_json:
        raw = {"spec": spec, "seconds": seconds, "runs": {f"{k:g}": v for k, v in all_runs.items()}}
        (out / f"results{suffix}.json").write_text(json.dumps(raw, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
