"""FL engine speed: seconds per round and aggregation time, as ratios measured in one run.

    .venv/bin/python experiments/perf/fl_round.py [--clients 10 100] [--steps 2] [--dim 1000000]

1. Seconds per round (local training of every client: ``--steps`` SGD steps of batch 32 with the
   MNIST-sized GroupNorm CNN) for:
   * ``naive``: the common FL-codebase pattern — ``copy.deepcopy(global_model)`` per client, a
     per-client ``DataLoader`` over a ``TensorDataset``, ``torch.optim.SGD``;
   * ``bare``: the same forward/backward/SGD steps on preloaded tensors with nothing around them;
   * ``sequential`` and ``vectorized``: :class:`runner.federated.simulator.LocalTraining`.
   Goals: sequential within 1.1× of bare on CPU; vectorized ≥ 10× naive on a GPU at 100 clients.
2. Aggregation time for ``n = 100`` messages of ``d = --dim`` floats per rule, ours vs ``byzfl``
   (when installed) on the same stack; goal: every rule at least as fast as byzfl's.
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from torch.utils.data import DataLoader, TensorDataset

from runner.federated import aggregators as agg
from runner.federated.simulator import LocalTraining, ParamLayout
from runner.models.small import SmallCNN


def timed(fn, repeat=3, device=None):
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeat):
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device is not None and device.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def round_times(clients: int, steps: int, device: torch.device, per_client: int = 64) -> dict[str, float]:
    torch.manual_seed(0)
    net = SmallCNN(1, 10, channels=(32, 64), hidden=512).to(device)
    layout = ParamLayout(net)
    x = torch.randn(clients * per_client, 1, 28, 28, device=device)
    y = torch.randint(0, 10, (clients * per_client,), device=device)
    idx = torch.randint(0, per_client, (clients, steps, 32), device=device) + per_client * torch.arange(
        clients, device=device
    ).view(-1, 1, 1)
    xs, ys = x[idx], y[idx]
    flat = layout.flatten([p.detach() for p in net.parameters()])
    start = flat.expand(clients, -1).clone()
    training = LocalTraining(net, layout, lr=0.05, steps=steps)
    loss_fn = torch.nn.functional.cross_entropy

    def naive():
        for c in range(clients):
            local = copy.deepcopy(net)
            opt = torch.optim.SGD(local.parameters(), lr=0.05)
            loader = DataLoader(
                TensorDataset(
                    x[c * per_client : (c + 1) * per_client], y[c * per_client : (c + 1) * per_client]
                ),
                batch_size=32,
                shuffle=True,
            )
            for s, (xb, yb) in enumerate(loader):
                if s == steps:
                    break
                opt.zero_grad()
                loss_fn(local(xb), yb).backward()
                opt.step()

    params = list(net.parameters())

    def bare():
        for c in range(clients):
            for s in range(steps):
                grads = torch.autograd.grad(loss_fn(net(xs[c, s]), ys[c, s]), params)
                with torch.no_grad():
                    for p, g in zip(params, grads, strict=True):
                        p.sub_(0.05 * g)

    out = {
        "naive": timed(naive, device=device),
        "bare": timed(bare, device=device),
        "sequential": timed(lambda: training.sequential(start, xs, ys), device=device),
    }
    try:
        out["vectorized"] = timed(lambda: training.vectorized(start, xs, ys), device=device)
    except RuntimeError as err:  # e.g. out of memory
        print(f"  vectorized failed at {clients} clients: {err}")
    return out


def byzfl_rules(f: int):
    try:
        import byzfl
    except ImportError:
        return {}
    return {
        "mean": byzfl.Average(),
        "median": byzfl.Median(),
        "trimmed_mean": byzfl.TrMean(f=f),
        "krum": byzfl.Krum(f=f + 1),  # byzfl scores on n - f - 1 neighbours (ours: Blanchard's n - f - 2)
        "multi_krum": byzfl.MultiKrum(f=f + 1),
        "geometric_median": byzfl.GeometricMedian(nu=0.1, T=3),
        "centered_clipping": byzfl.CenteredClipping(L=1, tau=10.0),
        "nnm": byzfl.NNM(f=f),
    }


def aggregation_times(n: int, d: int, f: int, device: torch.device) -> list[tuple[str, float, float | None]]:
    stack = torch.randn(n, d, device=device)
    theirs = byzfl_rules(f)
    rows = []
    ours = {name: (lambda s, r=rule: r.fn(s, f)) for name, rule in agg.AGGREGATORS.items()}
    ours["geometric_median"] = lambda s: agg.geometric_median(
        s, f, max_iter=3, nu=0.1
    )  # byzfl's default work
    ours["nnm"] = lambda s: agg.nearest_neighbor_mixing(s, f)
    for name, fn in ours.items():
        if name == "weighted_mean":
            continue
        t_ours = timed(lambda fn=fn: fn(stack), repeat=2, device=device)
        t_theirs = None
        if name in theirs and not (
            name == "nnm" and n * (n - f) * d > 2e8
        ):  # byzfl's NNM gathers (n, n-f, d)
            t_theirs = timed(lambda r=theirs[name]: r(stack), repeat=2, device=device)
        rows.append((name, t_ours, t_theirs))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--dim", type=int, default=1_000_000)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--skip-rounds", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(
        f"device: {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}, torch threads {torch.get_num_threads()}"
    )
    if not args.skip_rounds:
        print(f"\nseconds per round ({args.steps} local steps, batch 32, MNIST CNN 32-64-512):")
        print("clients | naive | bare | sequential | vectorized | seq/bare | naive/seq | naive/vec")
        for clients in args.clients:
            t = round_times(clients, args.steps, device)
            vec = t.get("vectorized", float("nan"))
            print(
                f"{clients} | {t['naive']:.3f} | {t['bare']:.3f} | {t['sequential']:.3f} | {vec:.3f} | "
                f"{t['sequential'] / t['bare']:.2f} | {t['naive'] / t['sequential']:.2f} | {t['naive'] / vec:.2f}"
            )
    f = args.n // 5
    print(f"\naggregation of n={args.n}, d={args.dim} (f={f}), seconds (best of 2):")
    print("rule | ours | byzfl | byzfl/ours")
    for name, mine, theirs in aggregation_times(args.n, args.dim, f, device):
        ratio = f"{theirs / mine:.2f}" if theirs else "–"
        print(f"{name} | {mine:.3f} | {theirs:.3f} | {ratio}" if theirs else f"{name} | {mine:.3f} | – | –")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
