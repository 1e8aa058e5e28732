"""Seconds per training epoch of NLGCL, LightGCN, SGL and SimGCL in one run, as ratios to LightGCN;
and our full-sort evaluation time. Optionally (``--recbole``) the same LightGCN epoch and full-sort
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
"""

from __future__ import annotations

import argparse
import json
import os
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
RECBOLE_PACKAGES = ["recbole==1.2.1", "numpy<2", "scipy<1.11", "torch", "pandas<2.2", "ray<2.10", "thop"]

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
epoch_s = []
for e in range(epochs):
    t = time.perf_counter(); trainer._train_epoch(train, e, show_progress=False); epoch_s.append(time.perf_counter() - t)
t = time.perf_counter(); trainer.evaluate(valid, load_best_model=False, show_progress=False); eval_s = time.perf_counter() - t
print("RESULT " + json.dumps({"epoch_s": epoch_s, "eval_s": eval_s}))
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
    for name, cls in (("LightGCN", LightGCN), ("NLGCL", NLGCL), ("SGL", SGL), ("SimGCL", SimGCL)):
        torch.manual_seed(0)
        net = cls(**dm.network_kwargs()).to(device)
        module = RecommenderModule(net, dm.num_users, dm.num_items).to(device)
        module.trainer = L.Trainer(accelerator="cpu" if device.type == "cpu" else "gpu", logger=False)
        module.trainer.datamodule = dm
        optimizer = torch.optim.Adam(net.parameters(), lr=5e-4)
        batches = list(dm.train_dataloader())
        epoch_s = []
        for epoch in range(args.epochs + 1):  # the first epoch is a warm-up, not counted
            sync(device, torch)
            started = time.perf_counter()
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
        eval_s = time_eval(module, dm, device, torch)
        out[name] = {"epoch_s": statistics.median(epoch_s), "eval_s": eval_s}
        print(f"{name:9s} {out[name]['epoch_s']:.3f} s/epoch, full-sort eval {eval_s:.3f} s", flush=True)
    return out


def time_eval(module, dm, device, torch) -> float:
    runs = []
    for _ in range(3):
        sync(device, torch)
        started = time.perf_counter()
        module._start_eval()
        for batch in dm.val_dataloader():
            module._evaluate_chunk(batch, "val", ("train",), module.val_metrics)
        module.val_metrics.compute()
        module.val_metrics.reset()
        sync(device, torch)
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


def sync(device, torch) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_recbole(inter_file: Path, name: str, args) -> dict | None:
    python = RECBOLE_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating the RecBole benchmark environment in {RECBOLE_VENV} (PyPI, a few minutes)")
        subprocess.run([sys.executable, "-m", "venv", str(RECBOLE_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *RECBOLE_PACKAGES], check=True)
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
        )
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT ") :])
            result["epoch_s"] = statistics.median(result["epoch_s"][1:] or result["epoch_s"])
            return result
    print("RecBole run failed:\n" + done.stderr[-3000:])
    return None


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
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    dm, inter_file, torch = build(args)
    torch.set_num_threads(args.threads)
    print(f"data: {dm.split.stats()}, batch {args.batch}, device {args.device}, threads {args.threads}")
    ours = time_models(dm, args, torch)
    base = ours["LightGCN"]["epoch_s"]
    print("\nepoch time relative to LightGCN (goal: NLGCL <= 1.3):")
    for name, values in ours.items():
        print(f"  {name:9s} {values['epoch_s'] / base:5.2f} x")
    if not args.recbole:
        print(
            "\nRecBole comparison skipped (run with --recbole to build /tmp/runner_recbole_venv and time it)"
        )
        return
    theirs = run_recbole(inter_file, args.dataset, args)
    if theirs:
        print("\nRecBole 1.2.1 LightGCN / ours (goals: epoch >= 2x, full-sort evaluation >= 4x):")
        print(f"  epoch: {theirs['epoch_s']:.3f} s / {base:.3f} s = {theirs['epoch_s'] / base:.2f} x")
        ev = ours["LightGCN"]["eval_s"]
        print(
            f"  full-sort evaluation: {theirs['eval_s']:.3f} s / {ev:.3f} s = {theirs['eval_s'] / ev:.2f} x"
        )


if __name__ == "__main__":
    main()
