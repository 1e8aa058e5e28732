"""The cost of Flower's simulation engine: the same FedAvg rounds in-process and through Flower, one run.

    .venv/bin/python experiments/perf/fl_vs_flower.py [--rounds 20] [--clients 20] [--nodes N]
        [--cpus 1] [--results experiments/perf/fl_vs_flower_results.md]

Workload: ``experiment=fedavg_mnist`` (the MNIST twin, 20 clients, 10 local steps of batch 32, the
FedAvg CNN), ``--rounds`` rounds driven by :meth:`FederatedModule.step_round` (the training step's
round, without Lightning around it):

* ``inprocess``: the engine's simulator, torch with ``--cpus`` threads;
* ``flower_sim``: the same module with its local training sent to Flower's simulation engine
  (:mod:`runner.federated.flower`: Ray limited to ``--cpus`` CPUs, ``--nodes`` virtual SuperNodes,
  default one per client, one ClientApp actor per CPU with one torch thread each).

The rounds alternate (in-process round r, then Flower round r) so that a load change on a shared
machine hits both sides.

Printed (and written to ``--results``): seconds per round for both and their ratio per round, the
median ratio, and the whole run including start-up (in-process: building the module; Flower: that
plus starting Ray and the ClientApp actors, node discovery, and stopping) as a ratio. The largest
difference between the two final models is printed too (0 when both use one thread).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import statistics
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

import torch
from omegaconf import OmegaConf

from runner.compose import compose_run_config
from runner.federated.flower import (
    FlowerTransport,
    RoundDispatcher,
    SimulationSession,
    build_replica,
    client_app,
)


def build(cfg):
    started = time.perf_counter()
    module = build_replica(cfg)
    module.prepare(module.datamodule_replica)
    return module, time.perf_counter() - started


def round_timer(module):
    """``time(r)``: seconds of round ``r`` of ``module`` (its own server optimizer)."""
    optimizer = module.strategy.configure_server_optimizer(module.net.parameters())

    def timed(r: int) -> float:
        start = time.perf_counter()
        module.step_round(r, optimizer)
        return time.perf_counter() - start

    return timed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument(
        "--nodes", type=int, default=None, help="virtual SuperNodes (default: one per client)"
    )
    parser.add_argument(
        "--cpus",
        type=int,
        default=1,
        help="CPUs of each side: in-process torch threads, Ray CPUs (1 per actor)",
    )
    parser.add_argument("--results", type=Path, default=Path(__file__).with_name("fl_vs_flower_results.md"))
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="fl_vs_flower_"))
    data_dir = Path(os.environ.get("RUNNER_DATA_DIR", Path.cwd() / "data"))
    cfg = compose_run_config(
        ["experiment=fedavg_mnist", f"dataset.num_clients={args.clients}"],
        output_dir=root / "run",
        root_dir=root,
        data_dir=data_dir,
    )
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    load_before = os.getloadavg()

    torch.set_num_threads(args.cpus)
    build(cfg)  # the first build writes the data twin: time warm builds on both sides
    reference, build_in = build(cfg)
    server, build_fl = build(cfg)
    nodes = args.nodes or args.clients
    started = time.perf_counter()
    session = SimulationSession(
        client_app(),
        nodes,
        {
            "client_resources": {"num_cpus": 1.0, "num_gpus": 0.0},
            "init_args": {"include_dashboard": False, "num_cpus": args.cpus},
        },
    )
    dispatcher = RoundDispatcher(FlowerTransport(session, 1800), server, config_yaml, nodes, 600, 1)
    dispatcher.discover()
    dispatcher.attach()
    start_fl = time.perf_counter() - started
    # alternate the two, round by round, so that a load change on a shared machine hits both
    in_round, fl_round = round_timer(reference), round_timer(server)
    in_rounds, fl_rounds = [], []
    for r in range(args.rounds):
        in_rounds.append(in_round(r))
        fl_rounds.append(fl_round(r))
        print(
            f"round {r}: in-process {in_rounds[-1]:.3f} s, Flower {fl_rounds[-1]:.3f} s",
            file=sys.stderr,
            flush=True,
        )
    started = time.perf_counter()
    dispatcher.detach()
    session.close()
    stop_fl = time.perf_counter() - started
    load_after = os.getloadavg()

    diff = float((server.global_flat() - reference.global_flat()).abs().max())
    ratios = [f / i for f, i in zip(fl_rounds, in_rounds, strict=True)]
    total_in = build_in + sum(in_rounds)
    total_fl = build_fl + start_fl + sum(fl_rounds) + stop_fl
    # the first Flower round also builds each ClientApp actor's replica (imports, data, model)
    steady = ratios[1:] if len(ratios) > 1 else ratios
    lines = [
        "# Flower simulation vs in-process FL rounds",
        "",
        f"{datetime.datetime.now():%Y-%m-%d %H:%M}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}, torch {torch.__version__}, "
        f"flwr {metadata.version('flwr')}, ray {metadata.version('ray')}; load average "
        f"{load_before[0]:.1f} before, {load_after[0]:.1f} after.",
        "",
        f"Workload: fedavg_mnist twin, {args.clients} clients, {args.rounds} rounds, 10 local steps of batch 32; "
        f"{args.cpus} CPU(s) each: in-process with {args.cpus} torch thread(s); Flower with {nodes} virtual "
        f"SuperNodes on Ray limited to {args.cpus} CPU(s), one ClientApp actor per CPU, 1 torch thread each. "
        "Rounds alternate (in-process r, Flower r) so that load changes hit both.",
        "",
        "| round | in-process s | Flower s | ratio |",
        "|---:|---:|---:|---:|",
    ]
    for r, (i, f, q) in enumerate(zip(in_rounds, fl_rounds, ratios, strict=True)):
        lines.append(f"| {r} | {i:.3f} | {f:.3f} | {q:.2f}× |")
    lines += [
        "",
        f"- per round (median, rounds 1–{args.rounds - 1}; round 0 also builds each actor's replica): "
        f"**{statistics.median(steady):.2f}×** (min {min(steady):.2f}×, max {max(steady):.2f}×)",
        f"- start-up: in-process build {build_in:.1f} s; Flower build {build_fl:.1f} s + Ray, actors and "
        f"node discovery {start_fl:.1f} s; Flower stop {stop_fl:.1f} s",
        f"- whole run including start-up: in-process {total_in:.1f} s, Flower {total_fl:.1f} s: "
        f"**{total_fl / total_in:.2f}×**",
        f"- largest difference between the final models: {diff:.2e}",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    args.results.write_text(text)
    print(f"written to {args.results}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
