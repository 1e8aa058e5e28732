"""FL engine speed: seconds per round and aggregation time, as ratios measured in one run.

    .venv/bin/python experiments/perf/fl_round.py [--clients 10 100] [--steps 2] [--dim 1000000]
        [--skip-rounds] [--threads 1] [--repeat 5] [--results experiments/perf/fl_round_results.md]

1. Seconds per round (local training of every client: ``--steps`` SGD steps of batch 32 with the
   MNIST-sized GroupNorm CNN) for:
   * ``naive``: the common FL-codebase pattern — ``copy.deepcopy(global_model)`` per client, a
     per-client ``DataLoader`` over a ``TensorDataset``, ``torch.optim.SGD``;
   * ``bare``: the same forward/backward/SGD steps on preloaded tensors with nothing around them;
   * ``sequential`` and ``vectorized``: :class:`runner.federated.simulator.LocalTraining`.
   Goals: sequential within 1.1× of bare on CPU; vectorized ≥ 10× naive on a GPU at 100 clients.
2. Aggregation time for ``n = 100`` messages of ``d = --dim`` floats per rule, ours vs ``byzfl``
   (when installed) on the same stack; goal: every rule at least as fast as byzfl's. Ours and byzfl's
   are timed alternately, ``--repeat`` times each, so that a load change on a shared machine hits
   both; the table gives the minimum and the median, and the largest difference between the two
   results where both compute the same thing.

torch runs with ``--threads`` intra-op threads (default 1: comparable on a shared machine). The
tables are printed and written to ``--results`` (markdown) with the machine, the library versions and
the load average before and after the run.
"""

from __future__ import annotations

import argparse
import copy
import datetime
import os
import platform
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path

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


def our_rules(n: int, f: int, center: torch.Tensor):
    """Ours, doing the work of byzfl's configuration above where there is one."""
    rules = {name: (lambda s, r=rule: r.fn(s, f)) for name, rule in agg.AGGREGATORS.items()}
    del rules["weighted_mean"]
    rules["multi_krum"] = lambda s: agg.multi_krum(s, f, m=n - f - 1)  # byzfl averages n - (f + 1)
    rules["geometric_median"] = lambda s: agg.geometric_median(s, f, max_iter=3, nu=0.1)  # byzfl's T, ν
    # from the previous aggregate, as in training (byzfl's instance also keeps its last result)
    rules["centered_clipping"] = lambda s: agg.centered_clipping(s, f, tau=10.0, center=center)
    rules["nnm"] = lambda s: agg.nearest_neighbor_mixing(s, f)
    return rules


# rules whose byzfl configuration computes the same result as ours (geometric median: byzfl starts
# from 0, ours from the mean; centered clipping: byzfl's instance moves its centre at each call)
SAME_RESULT = {"mean", "median", "trimmed_mean", "krum", "multi_krum"}


def aggregation_times(n: int, d: int, f: int, device: torch.device, repeat: int) -> list[dict]:
    stack = torch.randn(n, d, device=device)
    theirs = byzfl_rules(f)
    rows = []
    for name, fn in our_rules(n, f, center=stack[0].clone()).items():
        rule = theirs.get(name)
        if name == "nnm" and n * (n - f) * d > 2e8:  # byzfl's NNM gathers (n, n - f, d)
            rule = None
        times = {"ours": [], "byzfl": []}
        calls = {
            "ours": lambda fn=fn: fn(stack),
            "byzfl": None if rule is None else (lambda r=rule: r(stack)),
        }
        for call in calls.values():
            if call is not None:
                call()  # warm-up
        for _ in range(repeat):  # alternate, so that a change of load hits both
            for who, call in calls.items():
                if call is not None:
                    times[who].append(timed_once(call, device))
        row = {"rule": name, "ours": times["ours"], "byzfl": times["byzfl"], "max_diff": None}
        if rule is not None and name in SAME_RESULT:
            row["max_diff"] = float((fn(stack).float() - rule(stack).float()).abs().max())
        rows.append(row)
        print(
            f"  {name}: ours {min(times['ours']):.3f} s"
            + (f", byzfl {min(times['byzfl']):.3f} s" if times["byzfl"] else "")
        )
    return rows


def timed_once(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def machine(device: torch.device) -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = f", GPU {torch.cuda.get_device_name()}" if device.type == "cuda" else ""
    return f"{cpu}, {os.cpu_count()} logical CPUs{gpu}"


def versions() -> str:
    found = []
    for package in ("torch", "numpy", "byzfl"):
        try:
            found.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            found.append(f"{package} absent")
    return ", ".join(found)


def load_average() -> str:
    try:
        return " / ".join(f"{v:.2f}" for v in os.getloadavg()) + " (1 / 5 / 15 min)"
    except OSError:
        return "unavailable"


def aggregation_table(rows: list[dict]) -> list[str]:
    lines = [
        "| rule | ours min (s) | ours median (s) | byzfl min (s) | byzfl median (s) | byzfl/ours (min) "
        "| byzfl/ours (median) | max abs diff |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        ours, theirs = row["ours"], row["byzfl"]
        cells = [row["rule"], f"{min(ours):.3f}", f"{statistics.median(ours):.3f}"]
        if theirs:
            cells += [
                f"{min(theirs):.3f}",
                f"{statistics.median(theirs):.3f}",
                f"{min(theirs) / min(ours):.2f}",
                f"{statistics.median(theirs) / statistics.median(ours):.2f}",
            ]
        else:
            cells += ["–"] * 4
        cells.append("–" if row["max_diff"] is None else f"{row['max_diff']:.1e}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--dim", type=int, default=1_000_000)
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--skip-rounds", action="store_true")
    parser.add_argument("--repeat", type=int, default=5, help="timed calls per aggregation rule and library")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--results", type=Path, default=Path(__file__).with_name("fl_round_results.md"))
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    load_before = load_average()
    command = " ".join(sys.argv[1:] if argv is None else argv)
    started = datetime.datetime.now(datetime.timezone.utc)
    print(f"device: {machine(device)}; torch threads {torch.get_num_threads()}; load average {load_before}")
    report = [
        "# FL engine speed (`experiments/perf/fl_round.py`)",
        "",
        f"- run: {started:%Y-%m-%d %H:%M} UTC: `fl_round.py {command}`",
        f"- machine: {machine(device)}; torch intra-op threads: {torch.get_num_threads()}",
        f"- versions: {versions()}, Python {platform.python_version()}",
        f"- load average before: {load_before}",
    ]
    if not args.skip_rounds:
        print(f"\nseconds per round ({args.steps} local steps, batch 32, MNIST CNN 32-64-512):")
        table = [
            "| clients | naive | bare | sequential | vectorized | seq/bare | naive/seq | naive/vec |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for clients in args.clients:
            t = round_times(clients, args.steps, device)
            vec = t.get("vectorized", float("nan"))
            table.append(
                f"| {clients} | {t['naive']:.3f} | {t['bare']:.3f} | {t['sequential']:.3f} | {vec:.3f} | "
                f"{t['sequential'] / t['bare']:.2f} | {t['naive'] / t['sequential']:.2f} | {t['naive'] / vec:.2f} |"
            )
            print(table[-1])
        report += ["", f"## Seconds per round ({args.steps} local steps, batch 32, best of 3)", "", *table]
    f = args.n // 5
    print(
        f"\naggregation of n={args.n}, d={args.dim} (f={f}), seconds ({args.repeat} alternating calls each):"
    )
    rows = aggregation_times(args.n, args.dim, f, device, args.repeat)
    table = aggregation_table(rows)
    print("\n".join(table))
    load_after = load_average()
    report += [
        "",
        f"## Aggregation of n = {args.n} messages, d = {args.dim}, f = {f} ({device.type})",
        "",
        f"Ours and byzfl's called alternately, {args.repeat} timed calls each after a warm-up. "
        "byzfl/ours > 1: ours is faster. Geometric median: 3 Weiszfeld iterations, ν = 0.1 (byzfl's "
        "defaults); centered clipping: τ = 10, one iteration, from a non-zero centre; Krum and Multi-Krum "
        "with byzfl's f + 1 (it scores on n − f − 1 neighbours). No byzfl column: byzfl has no Bulyan, and "
        "its NNM gathers an (n, n − f, d) tensor. max abs diff: between the two results, where both "
        "compute the same thing.",
        "",
        *table,
        "",
        f"- load average after: {load_after}",
        "",
    ]
    args.results.write_text("\n".join(report))
    print(f"\nwritten: {args.results}; load average after: {load_after}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
