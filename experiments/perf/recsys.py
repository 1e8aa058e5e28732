"""Seconds per training epoch of NLGCL, LightGCN, SGL and SimGCL in one run, as ratios to LightGCN;
and our full-sort evaluation time. The graph layer, piece by piece, on torch-geometric against the
hand-written code (gcn_norm, dropout_edge, LGConv, LinkPredNDCG / LinkPredRecall): which one the
models use and whether this run's numbers support it ("graph layer" section). Optionally (``--recbole``) the same LightGCN epoch and full-sort
evaluation in RecBole 1.2.1 on the same ``.inter`` file, as ratios.

    .venv/bin/python experiments/perf/recsys.py                    # yelp twin (small), CPU
    .venv/bin/python experiments/perf/recsys.py --size large --device cuda
    .venv/bin/python experiments/perf/recsys.py --recbole           # + RecBole in /tmp/runner_recbole_venv

Goals (issue 6): NLGCL epoch <= 1.3 x LightGCN; against RecBole on CPU, LightGCN epoch >= 2x and
full-sort evaluation >= 4x faster. An epoch here is exactly what RecommenderModule does per epoch:
a device permutation, (user, positive) gathers, device negatives, the model's loss terms, Adam.

RecBole needs numpy < 2 and scipy < 1.11, so ``--recbole`` builds a separate virtual environment
under /tmp (never a project dependency) with pip from PyPI and runs RecBole there in a subprocess;
without the flag that part is skipped.

Every time is taken twice: wall seconds and CPU seconds of the process (``time.process_time``).
On a shared CPU with one torch thread the CPU seconds are the work done and barely depend on the
other jobs, so the ratios are computed from them; wall seconds are reported next to them.
The numbers, the machine, the load average and the command go to ``--out`` (markdown + json),
with two measured bounds: the CPU time of only the dense matmuls and exponentials NLGCL's exact
loss needs (the lowest NLGCL / LightGCN ratio possible here), and of only the ``torch.topk`` calls
of a full-sort pass (the highest RecBole / ours evaluation ratio possible while ranking with it).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "src"))

RECBOLE_VENV = Path("/tmp/runner_recbole_venv")
# torch pinned to the project's release (served from local disk here): an unpinned "torch" would let pip
# pick another build.
RECBOLE_TORCH = "torch==2.14.1"
RECBOLE_PACKAGES = [
    "recbole==1.2.1",
    "numpy<2",
    "scipy<1.11",
    RECBOLE_TORCH,
    "pandas<2.2",
    "ray<2.10",
    "thop",
]

RECBOLE_SCRIPT = r"""
import json, sys, time
from recbole.config import Config
from recbole.data import create_dataset, data_preparation
from recbole.model.general_recommender import LightGCN
from recbole.trainer import Trainer
from recbole.utils import init_seed
data_path, name, batch, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
config = Config(model="LightGCN", dataset=name, config_dict={
    "data_path": data_path, "train_batch_size": batch, "eval_batch_size": 4096 * 4, "n_layers": 2,
    "embedding_size": 64, "reg_weight": 1e-4, "learning_rate": 5e-4, "epochs": epochs, "device": "cpu",
    "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "order": "RO", "group_by": "user", "mode": "full"},
    "metrics": ["Recall", "NDCG"], "topk": [10, 20, 50], "valid_metric": "NDCG@10", "show_progress": False,
    "load_col": {"inter": ["user_id", "item_id"]}, "use_gpu": False, "checkpoint_dir": data_path + "/ckpt"})
init_seed(config["seed"], config["reproducibility"])
dataset = create_dataset(config)
train, valid, test = data_preparation(config, dataset)
model = LightGCN(config, train.dataset).to("cpu")
trainer = Trainer(config, model)
torch_threads = __import__("torch").get_num_threads()
epoch_s, epoch_cpu = [], []
for e in range(epochs + 1):  # the first epoch is a warm-up, not counted
    t, c = time.perf_counter(), time.process_time()
    trainer._train_epoch(train, e, show_progress=False)
    if e:
        epoch_s.append(time.perf_counter() - t); epoch_cpu.append(time.process_time() - c)
eval_s, eval_cpu = [], []
for _ in range(3):
    t, c = time.perf_counter(), time.process_time()
    trainer.evaluate(valid, load_best_model=False, show_progress=False)
    eval_s.append(time.perf_counter() - t); eval_cpu.append(time.process_time() - c)
print("RESULT " + json.dumps({"epoch_s": epoch_s, "epoch_cpu_s": epoch_cpu, "eval_s": eval_s,
                              "eval_cpu_s": eval_cpu, "torch_threads": torch_threads,
                              "train_batches": len(train), "inter": dataset.inter_num}))
"""


def build(args):
    import torch

    from runner.data.recsys import RecsysDataModule, RecsysTwin

    twin = RecsysTwin(
        args.dataset,
        num_users=args.users,
        num_items=args.items,
        interactions_per_user=args.per_user,
        min_interactions=10,
        affinity=2.0,
        noise=0.2,
        size=args.size,
    )
    root = Path(args.work) / f"{args.dataset}_{args.size}"
    dm = RecsysDataModule(
        args.dataset, synthetic=True, synthetic_root=str(root), twin=twin, batch_size=args.batch
    )
    return dm, root / f"{args.dataset}.inter", torch


def time_models(dm, args, torch) -> dict[str, dict[str, float]]:
    import lightning as L

    from runner.methods.recsys import RecommenderModule
    from runner.models.recsys import NLGCL, SGL, LightGCN, SimGCL

    device = torch.device(args.device)
    out = {}
    models = (
        ("LightGCN", LightGCN, {}),
        ("LightGCN-PyG", LightGCN, {"propagation": "pyg"}),  # torch-geometric LGConv layers
        ("NLGCL", NLGCL, {}),
        ("SGL", SGL, {}),
        ("SimGCL", SimGCL, {}),
    )
    for name, cls, options in models:
        torch.manual_seed(0)
        net = cls(**dm.network_kwargs(), **options).to(device)
        module = RecommenderModule(net, dm.num_users, dm.num_items).to(device)
        module.trainer = L.Trainer(accelerator="cpu" if device.type == "cpu" else "gpu", logger=False)
        module.trainer.datamodule = dm
        optimizer = torch.optim.Adam(net.parameters(), lr=5e-4)
        batches = list(dm.train_dataloader())
        epoch_s, epoch_cpu = [], []
        for epoch in range(args.epochs + 1):  # the first epoch is a warm-up, not counted
            sync(device, torch)
            started, cpu_started = time.perf_counter(), time.process_time()
            train = module._part("train")
            perm = torch.randperm(train.users.numel(), device=device)
            net.on_train_epoch_start(epoch)
            for batch in batches:
                index = perm[batch["start"] : batch["end"]]
                users, pos = train.users[index], train.items[index]
                terms = net.loss_terms(users, pos, module.sample_negatives(users), epoch=epoch)
                loss = torch.stack(list(terms.values())).sum()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            sync(device, torch)
            if epoch:
                epoch_s.append(time.perf_counter() - started)
                epoch_cpu.append(time.process_time() - cpu_started)
        eval_s, eval_cpu = time_eval(module, dm, device, torch)
        out[name] = {
            "epoch_s": statistics.median(epoch_s),
            "epoch_cpu_s": statistics.median(epoch_cpu),
            "eval_s": eval_s,
            "eval_cpu_s": eval_cpu,
        }
        v = out[name]
        print(
            f"{name:9s} epoch {v['epoch_s']:.3f} s wall / {v['epoch_cpu_s']:.3f} s CPU, "
            f"full-sort eval {v['eval_s']:.3f} s wall / {v['eval_cpu_s']:.3f} s CPU",
            flush=True,
        )
    return out


def nlgcl_floor(dm, args, torch, lightgcn_epoch_cpu: float) -> dict:
    """The irreducible part of NLGCL's extra term on this data, measured: per batch ``2 L`` InfoNCE
    terms, each one ``[A, C]`` score matmul forward and two backward (``A`` / ``C``: distinct anchors /
    candidates of the batch on CPU, ``B`` on CUDA) and one exponential of the ``[A, C]`` matrix. Their
    FLOPs against LightGCN's sparse propagation (``2 L`` sparse matmuls of ``nnz`` x ``d`` per batch,
    forward and backward), and their CPU time: the lowest NLGCL / LightGCN epoch ratio this
    implementation of the exact loss could reach (everything else free)."""
    device = torch.device(args.device)
    n_layers, d = 2, 64
    train = dm.split.train
    perm = torch.randperm(train.shape[1])
    sizes = []
    for start in range(0, train.shape[1], args.batch):
        index = perm[start : start + args.batch]
        if device.type == "cpu":
            sizes.append((train[0, index].unique().numel(), train[1, index].unique().numel()))
        else:
            sizes.append((index.numel(), index.numel()))
    per_term = [3 * 2 * a * c * d for a, c in sizes]  # user and item term have the same A * C
    contrastive_flops = 2 * n_layers * sum(per_term)
    nnz = 2 * train.shape[1]
    propagation_flops = len(sizes) * 2 * n_layers * 2 * nnz * d
    a, c = (round(statistics.mean(x)) for x in zip(*sizes, strict=True))
    x, y = torch.randn(a, d, device=device), torch.randn(c, d, device=device)
    scores = x @ y.T
    runs = []
    for _ in range(5):
        sync(device, torch)
        started = time.process_time()
        for _ in range(2 * n_layers):
            scores = x @ y.T
            scores.exp_()
            scores @ y
            scores.T @ x
        sync(device, torch)
        runs.append(time.process_time() - started)
    per_batch = statistics.median(runs)
    floor_epoch = per_batch * len(sizes)
    return {
        "batches": len(sizes),
        "mean_distinct_users_items": [a, c],
        "contrastive_gflop_per_epoch": contrastive_flops / 1e9,
        "propagation_gflop_per_epoch": propagation_flops / 1e9,
        "contrastive_matmul_exp_cpu_s_per_epoch": floor_epoch,
        "floor_ratio": (lightgcn_epoch_cpu + floor_epoch) / lightgcn_epoch_cpu,
    }


# torch-geometric is used where it is as fast as the hand-written code (ratio PyG / own <= this)
AS_FAST = 1.10


def hand_written_normalized_adjacency(train_graph, num_users, num_items, keep=None):
    """The hand-written ``D^-1/2 A D^-1/2`` (bincount degrees, COO -> CSR) the model code used before
    torch-geometric's ``gcn_norm``: the baseline of the "graph layer" comparison."""
    import torch

    users, items = train_graph[0], train_graph[1]
    if keep is not None:
        users, items = users[keep], items[keep]
    n = num_users + num_items
    rows = torch.cat([users, items + num_users])
    cols = torch.cat([items + num_users, users])
    degree = torch.bincount(rows, minlength=n).float()
    inv_sqrt = torch.where(degree > 0, degree.pow(-0.5), 0.0)
    values = inv_sqrt[rows] * inv_sqrt[cols]
    coo = torch.sparse_coo_tensor(torch.stack([rows, cols]), values, (n, n), check_invariants=False)
    return coo.coalesce().to_sparse_csr()


def cpu_seconds(fn, device, torch, repeats: int) -> float:
    """Median CPU seconds of ``fn()`` over ``repeats`` calls after one warm-up call."""
    fn()
    runs = []
    for _ in range(repeats):
        sync(device, torch)
        started = time.process_time()
        fn()
        sync(device, torch)
        runs.append(time.process_time() - started)
    return statistics.median(runs)


def graph_layer(dm, args, torch) -> list[dict]:
    """torch-geometric against the hand-written graph code, per piece of the graph layer: the
    normalised adjacency (``gcn_norm``), SGL's edge-dropout view (``dropout_edge``), the LightGCN
    propagation forward + backward (``LGConv`` vs ``symmetric_spmm``) and the full-sort ranking
    metrics (``LinkPredNDCG`` + ``LinkPredRecall`` vs ``RankingMetrics``). Each row says which one
    the model code uses, and whether that is what this measurement supports."""
    from torch_geometric.metrics import LinkPredNDCG, LinkPredRecall
    from torch_geometric.nn import LGConv

    from runner.metrics.ranking import RankingMetrics, topk_hits
    from runner.models.recsys.base import (
        bipartite_edge_index,
        edge_dropout_adjacency,
        gcn_normalized_csr,
        symmetric_spmm,
    )

    device = torch.device(args.device)
    graph = dm.split.train.to(device)
    users, items = dm.num_users, dm.num_items
    n, drop = users + items, 0.1
    edge_index = bipartite_edge_index(graph, users)
    adjacency = gcn_normalized_csr(edge_index, n)
    x = torch.randn(n, 64, device=device, requires_grad=True)
    conv = LGConv(normalize=False)

    def propagate(step):
        def run():
            layers = [x]
            for _ in range(2):
                layers.append(step(layers[-1]))
            torch.stack(layers).mean(0).square().sum().backward()

        return run

    scores = torch.randn(min(users, dm.eval_batch_users), items, device=device)
    relevant = torch.rand(scores.shape, device=device) < 0.02
    relevant[:, 0] = True
    truth = relevant.nonzero().T

    def ours_metrics():
        metric = RankingMetrics((10, 20, 50)).to(device)
        metric.update(topk_hits(scores, relevant, 50), relevant.sum(1))
        metric.compute()

    def pyg_metrics():
        top = torch.topk(scores, 50, dim=1).indices
        for k in (10, 20, 50):
            for cls in (LinkPredNDCG, LinkPredRecall):
                metric = cls(k).to(device)
                metric.update(top[:, :k], truth)
                metric.compute()

    pieces = [
        (
            "normalised adjacency",
            "gcn_norm + to_torch_csr_tensor",
            lambda: gcn_normalized_csr(edge_index, n),
            "bincount degrees + COO coalesce -> CSR",
            lambda: hand_written_normalized_adjacency(graph, users, items),
            "pyg",
        ),
        (
            "SGL edge-dropout view",
            "dropout_edge(force_undirected) + gcn_norm",
            lambda: edge_dropout_adjacency(edge_index, n, drop),
            "edge mask + hand-written normalisation",
            lambda: hand_written_normalized_adjacency(
                graph, users, items, torch.rand(graph.shape[1], device=device) >= drop
            ),
            "pyg",
        ),
        (
            "propagation, 2 layers fwd + bwd",
            "LGConv (autograd sparse backward)",
            propagate(lambda h: conv(h, adjacency)),
            "symmetric_spmm (backward = A g)",
            propagate(lambda h: symmetric_spmm(adjacency, h)),
            "own",
        ),
        (
            "ranking metrics @10/20/50, one user chunk",
            "LinkPredNDCG + LinkPredRecall",
            pyg_metrics,
            "RankingMetrics (top-k hits, one pass)",
            ours_metrics,
            "own",
        ),
    ]
    rows = []
    for piece, pyg_name, pyg_fn, own_name, own_fn, used in pieces:
        pyg_s = cpu_seconds(pyg_fn, device, torch, args.layer_repeats)
        own_s = cpu_seconds(own_fn, device, torch, args.layer_repeats)
        ratio = pyg_s / own_s
        supported = (ratio <= AS_FAST) == (used == "pyg")
        rows.append(
            {
                "piece": piece,
                "pyg": pyg_name,
                "pyg_cpu_s": pyg_s,
                "own": own_name,
                "own_cpu_s": own_s,
                "ratio": ratio,
                "used": used,
                "supported": supported,
            }
        )
    return rows


def graph_layer_lines(rows: list[dict], epochs: dict | None = None) -> list[str]:
    """The comparison as printed lines (also the markdown section)."""
    lines = []
    for r in rows:
        verdict = "PyG used" if r["used"] == "pyg" else "hand-written kept"
        why = "as fast" if r["ratio"] <= AS_FAST else "PyG slower"
        flag = "" if r["supported"] else "  <- the measurement no longer supports this choice"
        lines.append(
            f"{r['piece']}: PyG {r['pyg']} {r['pyg_cpu_s'] * 1e3:.2f} ms vs own {r['own']} "
            f"{r['own_cpu_s'] * 1e3:.2f} ms -> PyG / own {r['ratio']:.2f} ({why}): {verdict}{flag}"
        )
    if epochs and "LightGCN-PyG" in epochs:
        ratio = epochs["LightGCN-PyG"]["epoch_cpu_s"] / epochs["LightGCN"]["epoch_cpu_s"]
        lines.append(
            f"whole LightGCN epoch with model.propagation=pyg (LGConv) / own: {ratio:.2f} "
            f"({'PyG slower: the default stays own' if ratio > AS_FAST else 'as fast'})"
        )
    return lines


def time_eval(module, dm, device, torch) -> tuple[float, float]:
    runs, cpu = [], []
    for _ in range(3):
        sync(device, torch)
        started, cpu_started = time.perf_counter(), time.process_time()
        module._start_eval()
        for batch in dm.val_dataloader():
            module._evaluate_chunk(batch, "val", ("train",), module.val_metrics)
        module.val_metrics.compute()
        module.val_metrics.reset()
        sync(device, torch)
        runs.append(time.perf_counter() - started)
        cpu.append(time.process_time() - cpu_started)
    return statistics.median(runs), statistics.median(cpu)


def topk_alone(dm, args, torch) -> float:
    """CPU seconds of only the ``torch.topk(scores, 50)`` calls of one full-sort pass (every user
    chunk against all items): both our evaluation and RecBole's rank with it, so RecBole's
    evaluation time over this is the most our evaluation could gain while it uses ``torch.topk``."""
    device = torch.device(args.device)
    runs = []
    for _ in range(3):
        total = 0.0
        for start in range(0, dm.num_users, dm.eval_batch_users):
            rows = min(dm.eval_batch_users, dm.num_users - start)
            scores = torch.randn(rows, dm.num_items, device=device)
            sync(device, torch)
            started = time.process_time()
            torch.topk(scores, min(50, dm.num_items), dim=1)
            sync(device, torch)
            total += time.process_time() - started
        runs.append(total)
    return statistics.median(runs)


def sync(device, torch) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_recbole(inter_file: Path, name: str, args) -> dict:
    """RecBole's timings, or ``{"error": why}`` when it cannot be installed or run."""
    python = RECBOLE_VENV / "bin" / "python"
    check = [
        str(python),
        "-c",
        "import recbole, numpy, scipy, torch; print(recbole.__version__, torch.__version__)",
    ]
    if not python.exists() or subprocess.run(check, capture_output=True).returncode:
        print(f"creating the RecBole benchmark environment in {RECBOLE_VENV} (PyPI, a few minutes)")
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(RECBOLE_VENV)], check=True)
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *RECBOLE_PACKAGES], capture_output=True, text=True
        )
        if done.returncode:
            return {"error": f"pip install {' '.join(RECBOLE_PACKAGES)} failed:\n{done.stderr[-3000:]}"}
    versions = subprocess.run(check, capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(prefix="recbole_bench_") as tmp:
        folder = Path(tmp) / name
        folder.mkdir()
        os.symlink(inter_file, folder / f"{name}.inter")
        script = Path(tmp) / "bench.py"
        script.write_text(RECBOLE_SCRIPT)
        done = subprocess.run(
            [str(python), str(script), tmp, name, str(args.batch), str(args.epochs)],
            capture_output=True,
            text=True,
            env={**os.environ, "OMP_NUM_THREADS": str(args.threads)},
            cwd=tmp,  # RecBole writes log/ and log_tensorboard/ into its working directory
        )
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT ") :])
            for key in ("epoch_s", "epoch_cpu_s", "eval_s", "eval_cpu_s"):
                result[key] = statistics.median(result[key])
            result["versions"] = versions
            return result
    return {"error": "RecBole run failed:\n" + done.stderr[-3000:]}


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}


def load_average() -> str:
    try:
        return " / ".join(f"{x:.2f}" for x in os.getloadavg()) + " (1 / 5 / 15 min)"
    except OSError:
        return "n/a"


def write_report(path: Path, report: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    ours, base = report["ours"], report["ours"]["LightGCN"]
    lines = [
        "# Recommender speed (experiments/perf/recsys.py)",
        "",
        f"Produced by `{report['command']}` on {report['date']}.",
        "",
        f"- machine: {report['machine']['cpu']}, {report['machine']['cores']} cores (shared with other jobs), "
        f"device `{report['device']}`, {report['threads']} torch thread(s), torch {report['torch']}",
        f"- load average: {report['load_before']} before, {report['load_after']} after",
        f"- data: `{report['inter_file']}` (twin), {report['data']}, batch {report['batch']}, "
        f"median of {report['epochs']} epochs after a warm-up epoch; evaluation: median of 3 full-sort "
        "passes over every user (Recall / NDCG @ 10, 20, 50; training items masked)",
        "- ratios from CPU seconds of the process (the work done; with 1 thread on a shared CPU they "
        "hardly depend on the other jobs); wall seconds for reference",
        "",
        "| model | epoch wall s | epoch CPU s | / LightGCN (CPU) | / LightGCN (wall) | eval wall s | eval CPU s |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, v in ours.items():
        lines.append(
            f"| {name} | {v['epoch_s']:.3f} | {v['epoch_cpu_s']:.3f} | "
            f"{v['epoch_cpu_s'] / base['epoch_cpu_s']:.2f} | {v['epoch_s'] / base['epoch_s']:.2f} | "
            f"{v['eval_s']:.3f} | {v['eval_cpu_s']:.3f} |"
        )
    nl = ours.get("NLGCL")
    if nl:
        fl = report["nlgcl_floor"]
        lines += [
            "",
            f"NLGCL epoch / LightGCN epoch: {nl['epoch_cpu_s'] / base['epoch_cpu_s']:.2f} (goal <= 1.3).",
            "",
            "Irreducible part of NLGCL's extra term here: per batch 2 L = 4 InfoNCE terms, each an "
            "[A, C] score matmul forward, two matmuls backward and one exponential of the [A, C] matrix, "
            f"with A, C = {fl['mean_distinct_users_items']} distinct users / items per batch on average "
            "(duplicates grouped exactly on CPU; B x B on CUDA): "
            f"{fl['contrastive_gflop_per_epoch']:.2f} GFLOP of dense matmuls per epoch against "
            f"{fl['propagation_gflop_per_epoch']:.2f} GFLOP of LightGCN's sparse propagation. These "
            f"matmuls and exponentials alone take {fl['contrastive_matmul_exp_cpu_s_per_epoch']:.3f} CPU s "
            f"per epoch ({fl['batches']} batches), so even with everything else free NLGCL / LightGCN >= "
            f"{fl['floor_ratio']:.2f} on this machine and data.",
        ]
    if report.get("graph_layer"):
        lines += [
            "",
            "## Graph layer: torch-geometric vs hand-written",
            "",
            f"torch-geometric is used where PyG / own <= {AS_FAST} (as fast, within noise); median CPU time "
            f"of {report.get('layer_repeats', '')} calls after a warm-up.",
            "",
            *[f"- {line}" for line in graph_layer_lines(report["graph_layer"], ours)],
        ]
    theirs = report.get("recbole")
    lines += ["", "## RecBole 1.2.1 LightGCN on the same `.inter` file", ""]
    if theirs is None:
        lines.append("Not run (`--recbole` not given).")
    elif "error" in theirs:
        lines += ["Could not be run:", "", "```", theirs["error"].strip(), "```"]
    else:
        lines += [
            f"Separate environment {RECBOLE_VENV} ({theirs.get('versions', '')}), same batch size, "
            f"{theirs.get('torch_threads')} torch thread(s), its own 80/10/10 split of the file "
            f"({theirs.get('inter')} interactions, {theirs.get('train_batches')} training batches).",
            "",
            "| | RecBole wall s | RecBole CPU s | ours wall s | ours CPU s | RecBole / ours (CPU) | (wall) | goal |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for label, key, goal in (
            ("LightGCN epoch", "epoch", ">= 2"),
            ("full-sort evaluation", "eval", ">= 4"),
        ):
            lines.append(
                f"| {label} | {theirs[key + '_s']:.3f} | {theirs[key + '_cpu_s']:.3f} | {base[key + '_s']:.3f} | "
                f"{base[key + '_cpu_s']:.3f} | {theirs[key + '_cpu_s'] / base[key + '_cpu_s']:.2f} | "
                f"{theirs[key + '_s'] / base[key + '_s']:.2f} | {goal} |"
            )
        topk = report["nlgcl_floor"].get("topk_cpu_s")
        if topk:
            lines += [
                "",
                "Full-sort evaluation: the `torch.topk(scores, 50)` calls alone (both implementations rank "
                f"with it) take {topk:.3f} CPU s of our {base['eval_cpu_s']:.3f} s per pass, so while ranking "
                f"uses `torch.topk` RecBole / ours <= {theirs['eval_cpu_s'] / topk:.2f} even with everything "
                "else free.",
            ]
    path.write_text("\n".join(lines) + "\n")
    print(f"\nwrote {path} and {path.with_suffix('.json')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="yelp")
    parser.add_argument("--size", default="small", choices=("small", "large"))
    parser.add_argument("--users", type=int, default=1500)
    parser.add_argument("--items", type=int, default=1200)
    parser.add_argument("--per-user", type=float, default=30.0)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 on a shared box)")
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "runner_perf_recsys"))
    parser.add_argument("--recbole", action="store_true", help="also time RecBole 1.2.1 (separate venv)")
    parser.add_argument("--layer-repeats", type=int, default=20, help="calls per graph-layer timing")
    parser.add_argument(
        "--out", default=str(REPO / "experiments" / "nlgcl" / "speed.md"), help="report (.md and .json)"
    )
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    load_before = load_average()
    dm, inter_file, torch = build(args)
    torch.set_num_threads(args.threads)
    print(f"data: {dm.split.stats()}, batch {args.batch}, device {args.device}, threads {args.threads}")
    ours = time_models(dm, args, torch)
    base = ours["LightGCN"]["epoch_cpu_s"]
    print("\nepoch CPU time relative to LightGCN (goal: NLGCL <= 1.3):")
    for name, values in ours.items():
        print(f"  {name:9s} {values['epoch_cpu_s'] / base:5.2f} x")
    layer_rows = graph_layer(dm, args, torch)
    print("\ngraph layer, torch-geometric vs hand-written (CPU seconds, median):")
    for line in graph_layer_lines(layer_rows, ours):
        print("  " + line)
    floor = nlgcl_floor(dm, args, torch, base)
    floor["topk_cpu_s"] = topk_alone(dm, args, torch)
    print(
        f"NLGCL's extra term: {floor['contrastive_gflop_per_epoch']:.2f} GFLOP/epoch in dense matmuls "
        f"(LightGCN's propagation {floor['propagation_gflop_per_epoch']:.2f}); its matmuls + exp alone take "
        f"{floor['contrastive_matmul_exp_cpu_s_per_epoch']:.3f} CPU s/epoch -> lowest ratio {floor['floor_ratio']:.2f}"
    )
    theirs = None
    if args.recbole:
        theirs = run_recbole(inter_file, args.dataset, args)
        if "error" in theirs:
            print(theirs["error"])
        else:
            print(
                "\nRecBole 1.2.1 LightGCN / ours, CPU seconds (goals: epoch >= 2x, full-sort evaluation >= 4x):"
            )
            for label, key in (("epoch", "epoch_cpu_s"), ("full-sort evaluation", "eval_cpu_s")):
                ratio = theirs[key] / ours["LightGCN"][key]
                print(f"  {label}: {theirs[key]:.3f} s / {ours['LightGCN'][key]:.3f} s = {ratio:.2f} x")
    else:
        print(
            "\nRecBole comparison skipped (run with --recbole to build /tmp/runner_recbole_venv and time it)"
        )
    import torch as _torch

    report = {
        "command": "experiments/perf/recsys.py " + " ".join(sys.argv[1:]),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(),
        "device": args.device,
        "threads": args.threads,
        "torch": _torch.__version__,
        "load_before": load_before,
        "load_after": load_average(),
        "inter_file": str(inter_file),
        "data": dm.split.stats(),
        "batch": args.batch,
        "epochs": args.epochs,
        "layer_repeats": args.layer_repeats,
        "ours": ours,
        "nlgcl_floor": floor,
        "graph_layer": layer_rows,
        "recbole": theirs,
    }
    write_report(Path(args.out), report)


if __name__ == "__main__":
    main()
