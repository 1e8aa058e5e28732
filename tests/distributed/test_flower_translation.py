"""The Flower adapter's translation of a strategy, without Flower: the server half (round planning,
aggregation, server hooks) in one module, the client half on in-process nodes (``LocalNodes``, the
same ``serve_train`` a Flower ClientApp runs, each node with its own state store). Three rounds must
give exactly the in-process engine's weights, and the client state the nodes keep must equal the
engine's client state. Configs are the experiments' own ``debug=fdr`` sizes."""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from runner.federated.flower import (
    LocalNodes,
    RoundDispatcher,
    build_replica,
    clients_of_node,
    training_rows,
)
from runner.federated.strategy import RoundPlan

ROUNDS = 3

CASES = {
    "fedavg": ("fedavg_mnist", []),
    "byrd_nafl_median_label_flip": (
        "byrd_nafl_mnist",
        ["fl_strategy.aggregator=median", "fl_strategy.attack=label_flip"],
    ),
}
# ~20-40 s each on a loaded 2-core machine: the slow tier
SLOW_CASES = {
    "fedprox": ("fedavg_mnist", ["fl_strategy=fedprox"]),
    "byrd_nafl_client_momentum": ("byrd_nafl_mnist", ["fl_strategy.momentum_at=clients"]),
    "fedpall": ("fedpall_digits", []),
    "co_pfl": ("co_pfl_cifar10", []),
    "fedsm": ("fedsm_cifar10lt", ["fl_strategy.retrain_from_round=1"]),
}
ALL_CASES = {**CASES, **SLOW_CASES}
PARAMS = [pytest.param(c, marks=pytest.mark.slow) if c in SLOW_CASES else c for c in sorted(ALL_CASES)]


def drive(module, rounds: int) -> None:
    if getattr(module.strategy, "class_names", False) is None:  # FedSM reads them from a Trainer's datamodule
        module.strategy.class_names = list(module.datamodule_replica.splits.class_names)
    optimizer = module.strategy.configure_server_optimizer(module.net.parameters())
    for r in range(rounds):
        module.step_round(r, optimizer)


@pytest.mark.parametrize("case", PARAMS)
def test_nodes_reproduce_the_engine(case, make_cfg):
    experiment, extra = ALL_CASES[case]
    cfg = make_cfg(f"experiment={experiment}", "debug=fdr", *extra)
    reference = build_replica(cfg)
    reference.prepare(reference.datamodule_replica)
    drive(reference, ROUNDS)

    server = build_replica(cfg)
    server.prepare(server.datamodule_replica)
    nodes = LocalNodes(2)
    config = OmegaConf.to_yaml(cfg, resolve=True)
    threads = torch.get_num_threads()  # the nodes run in this process: keep its thread count
    dispatcher = RoundDispatcher(nodes, server, config, expected_nodes=2, torch_threads=threads)
    dispatcher.discover()
    dispatcher.attach()
    drive(server, ROUNDS)
    dispatcher.detach()

    assert torch.equal(server.global_flat(), reference.global_flat())
    if getattr(getattr(server, "buffer_layout", None), "dim", 0):
        assert torch.equal(server.global_buffers(), reference.global_buffers())
    # the state each node keeps for its clients is the engine's client state
    state = reference.strategy.state
    kept = {k: rows for store in nodes.stores.values() for k, rows in store.items()}
    for k, rows in kept.items():
        for name in state.names:
            assert torch.equal(rows[name], getattr(state, name)[k]), (case, name, k)
    if state.names:
        assert kept, "no node kept client state"
    # the detached module trains in-process again
    assert "train_clients" not in server.__dict__ and "run_round" not in server.__dict__


def test_clients_of_node_partitions_every_client_once():
    hosted = [clients_of_node(i, 3, 10) for i in range(3)]
    assert sorted(k for part in hosted for k in part) == list(range(10))
    assert hosted[1] == [1, 4, 7]


def test_training_rows_follow_the_attack():
    class Attack:
        needs_training = False

    class Strategy:
        attack = Attack()

    byzantine = torch.tensor([False, True, False, True])
    plan = RoundPlan(0, torch.arange(4), byzantine, torch.zeros(4, 1), torch.Generator(), 2)
    assert training_rows(plan, Strategy()).tolist() == [0, 2]
    Strategy.attack.needs_training = True
    assert training_rows(plan, Strategy()).tolist() == [0, 1, 2, 3]
