"""Local epochs over each client's own data (per-client step counts in both execution paths) and
BatchNorm running statistics as client state (train on, and update, the client's copy; evaluate in
eval mode; the strategy says which statistics are shared; checkpoint round trip and resume)."""

from __future__ import annotations

import copy
import io

import numpy as np
import pytest
import torch
from torch import nn

from runner.errors import UserError
from runner.federated import FederatedModule
from runner.federated.module import majority_class_accuracy
from runner.federated.simulator import BufferLayout, ClientData, LocalTraining, ParamLayout, epoch_steps
from runner.federated.strategy import Strategy
from runner.models.small import SmallCNN
from tests.fl_methods.test_fedpall_strategy import CLASSES, CLIENTS, TinyDomains, tiny_net


class UnevenDomains(TinyDomains):
    """TinyDomains with clients of 10, 24 and 7 samples."""

    def __init__(self) -> None:
        super().__init__(per_client=24)
        self.parts = [np.arange(0, 10), np.arange(24, 48), np.arange(48, 55)]


def bn_mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(12, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3)
    ).double()


def _flat(net: nn.Module) -> tuple[ParamLayout, torch.Tensor]:
    layout = ParamLayout(net)
    return layout, layout.flatten([p.detach() for p in net.parameters()])


# ---- local epochs ------------------------------------------------------------------------------------
def test_epoch_steps_count_batches_of_each_client():
    sizes = torch.tensor([5, 12, 3, 64])
    assert epoch_steps(sizes, 1, 4).tolist() == [2, 3, 1, 16]
    assert epoch_steps(sizes, 5, 4).tolist() == [10, 15, 5, 80]
    assert epoch_steps(sizes, 0.5, 4).tolist() == [1, 2, 1, 8]


def test_epoch_indices_visit_every_sample_of_the_client_once_per_epoch():
    parts = [np.arange(0, 5), np.arange(5, 17), np.arange(17, 20)]
    data = ClientData.from_parts(torch.zeros(20, 1), torch.zeros(20, dtype=torch.long), parts)
    idx, steps = data.epoch_indices(torch.tensor([1, 0, 2]), 2, 4, torch.Generator().manual_seed(0))
    assert steps.tolist() == [6, 4, 2] and idx.shape == (3, 6, 4)
    for row, part, per_epoch in ((0, parts[1], 3), (1, parts[0], 2), (2, parts[2], 1)):
        for epoch in range(2):
            batch = idx[row, epoch * per_epoch : (epoch + 1) * per_epoch].flatten().tolist()
            assert set(batch) == set(part.tolist())  # every sample seen in the epoch
            if len(part) % 4 == 0:
                assert sorted(batch) == sorted(part.tolist())  # ... exactly once
        assert set(idx[row].flatten().tolist()) <= set(part.tolist())  # masked rows stay in the client
    first, second = idx[0, :3].flatten(), idx[0, 3:6].flatten()
    assert not torch.equal(first, second)  # a fresh permutation per epoch
    extra, more = data.epoch_indices(torch.tensor([1]), 1, 4, torch.Generator().manual_seed(0), extra_steps=2)
    assert more.tolist() == [5] and set(extra[0].flatten().tolist()) <= set(parts[1].tolist())


@pytest.mark.parametrize("with_buffers", [False, True])
def test_per_client_step_counts_in_both_paths_equal_separate_runs(with_buffers):
    net = (
        bn_mlp()
        if with_buffers
        else SmallCNN(1, 3, image_size=8, channels=(2, 3), hidden=6, groups=1).double()
    )
    layout, flat = _flat(net)
    torch.manual_seed(1)
    start = flat.expand(3, -1).clone() + 0.01 * torch.randn(3, layout.dim, dtype=torch.float64)
    shape = (12,) if with_buffers else (1, 8, 8)
    xs = torch.randn(3, 4, 5, *shape, dtype=torch.float64)
    ys = torch.randint(0, 3, (3, 4, 5))
    counts = torch.tensor([1, 4, 2])
    training = LocalTraining(net, layout, lr=0.1, steps=4, weight_decay=1e-3)
    vec = training.run_task("vectorized", start, xs, ys, client_steps=counts)
    seq = training.run_task("sequential", start, xs, ys, client_steps=counts)
    torch.testing.assert_close(vec.final, seq.final, atol=1e-10, rtol=0)
    for i, count in enumerate(counts.tolist()):
        alone = LocalTraining(net, layout, lr=0.1, steps=count, weight_decay=1e-3)
        own = alone.run_task("sequential", start[i : i + 1], xs[i : i + 1, :count], ys[i : i + 1, :count])
        torch.testing.assert_close(vec.final[i], own.final[0], atol=1e-10, rtol=0)
        if with_buffers:
            torch.testing.assert_close(vec.buffers[i], own.buffers[0], atol=1e-10, rtol=0)
    assert not torch.allclose(vec.final[0], vec.final[1])
    if with_buffers:
        torch.testing.assert_close(vec.buffers, seq.buffers, atol=1e-10, rtol=0)
    else:
        assert vec.buffers is None and seq.buffers is None


def test_a_round_in_local_epochs_gives_each_client_its_own_step_count():
    strategy = Strategy(local_steps=None, local_epochs=2, local_lr=0.05, batch_size=4, server_lr=0.05)
    module = FederatedModule(tiny_net(), strategy, CLASSES, execution="sequential")
    module.prepare(UnevenDomains())
    _, _, steps = module.local_batches(torch.arange(CLIENTS), torch.Generator().manual_seed(0))
    assert steps.tolist() == [6, 12, 4]  # 2 × ⌈10/4⌉, 2 × ⌈24/4⌉, 2 × ⌈7/4⌉
    directions = {}
    for execution in ("sequential", "vectorized"):
        strategy = Strategy(local_steps=None, local_epochs=2, local_lr=0.05, batch_size=4, server_lr=0.05)
        module = FederatedModule(tiny_net(), strategy, CLASSES, execution=execution)
        module.prepare(UnevenDomains())
        directions[execution] = module.run_round(0)
    torch.testing.assert_close(directions["sequential"]["direction"], directions["vectorized"]["direction"])
    torch.testing.assert_close(directions["sequential"]["buffers"], directions["vectorized"]["buffers"])


def test_exactly_one_unit_of_local_work():
    with pytest.raises(UserError, match="exactly one of local_steps"):
        Strategy(local_steps=5, local_epochs=1)
    with pytest.raises(UserError, match="exactly one of local_steps"):
        Strategy(local_steps=None, local_epochs=None)
    with pytest.raises(UserError, match="local_epochs"):
        Strategy(local_steps=None, local_epochs=0)


# ---- BatchNorm running statistics ---------------------------------------------------------------------
def test_local_training_updates_running_stats_like_a_plain_module():
    net = bn_mlp()
    layout, flat = _flat(net)
    buffers = BufferLayout(net)
    xs = torch.randn(2, 3, 6, 12, dtype=torch.float64)
    ys = torch.randint(0, 3, (2, 3, 6))
    start_buffers = torch.stack([buffers.of(net), buffers.of(net) + 0.5])
    training = LocalTraining(net, layout, lr=0.1, steps=3)
    for execution in ("vectorized", "sequential"):
        result = training.run_task(execution, flat.expand(2, -1).clone(), xs, ys, buffers=start_buffers)
        for i in range(2):  # reference: the module itself, train mode, torch.optim.SGD
            ref = copy.deepcopy(net).train()
            with torch.no_grad():
                ref[2].running_mean += 0.5 * i
                ref[2].running_var += 0.5 * i
            optimizer = torch.optim.SGD(ref.parameters(), lr=0.1)
            for s in range(3):
                optimizer.zero_grad()
                nn.functional.cross_entropy(ref(xs[i, s]), ys[i, s]).backward()
                optimizer.step()
            torch.testing.assert_close(
                result.final[i], layout.flatten([p.detach() for p in ref.parameters()])
            )
            torch.testing.assert_close(result.buffers[i], buffers.of(ref))
    assert torch.equal(buffers.of(net), BufferLayout(bn_mlp()).of(bn_mlp()))  # the template is untouched


def test_evaluation_does_not_depend_on_the_test_batch():
    module = FederatedModule(
        tiny_net(), Strategy(local_steps=3, local_lr=0.05, batch_size=8, server_lr=0.05), CLASSES
    )
    data = TinyDomains()
    module.prepare(data)
    optimizer = module.strategy.configure_server_optimizer(module.net.parameters())
    for r in range(2):
        module.step_round(r, optimizer)
    flat, buffers = module.global_flat(), module.global_buffers()
    x = data.x[:12]
    with module.eval_mode():
        alone = module.forward_flat(flat, x[:3], buffers=buffers)
        within = module.forward_flat(flat, x, buffers=buffers)[:3]
        other = module.forward_flat(flat, torch.cat([x[:3], data.x[-40:]]), buffers=buffers)[:3]
    torch.testing.assert_close(alone, within, atol=1e-12, rtol=0)
    torch.testing.assert_close(alone, other, atol=1e-12, rtol=0)
    train_mode = module.forward_flat(flat, x, buffers=buffers)[:3]  # batch statistics: would differ
    assert not torch.allclose(alone, train_mode)
    module.eval_batch_size = 100
    whole = module.personalised_accuracy(module.client_data)
    module.eval_batch_size = 5
    torch.testing.assert_close(whole, module.personalised_accuracy(module.client_data))
    assert torch.equal(module.global_buffers(), buffers)  # evaluating changed no statistic


def test_fedavg_averages_running_stats_fedbn_keeps_them_per_client():
    data = UnevenDomains()
    fedavg = FederatedModule(
        tiny_net(), Strategy(local_steps=2, local_lr=0.05, batch_size=4, server_lr=0.05), CLASSES
    )
    fedavg.prepare(data)
    initial = fedavg.global_buffers().clone()
    strategy = fedavg.strategy
    plan = strategy.configure_train(0, fedavg.global_flat())
    out = fedavg.run_round(0)
    xs, ys, _ = fedavg.local_batches(plan.clients, plan.generator)
    trained = fedavg.train_clients(
        plan.start, xs, ys, buffers=strategy.start_buffers(plan, torch.arange(3), initial)
    )
    sizes = torch.tensor([10.0, 24.0, 7.0], dtype=torch.float64)
    expected = (sizes[:, None] * trained.buffers).sum(0) / sizes.sum()
    torch.testing.assert_close(out["buffers"], expected)
    assert "personal_buffers" not in strategy.state

    fedbn = FederatedModule(
        tiny_net(),
        Strategy(local_steps=2, local_lr=0.05, batch_size=4, server_lr=0.05, personal_parameters=["bn"]),
        CLASSES,
    )
    fedbn.prepare(data)
    assert bool(fedbn.strategy.personal_buffer_mask.all())  # every BN statistic is personal
    optimizer = fedbn.strategy.configure_server_optimizer(fedbn.net.parameters())
    fedbn.step_round(0, optimizer)
    assert torch.equal(fedbn.global_buffers(), initial)  # nothing shared
    own = fedbn.strategy.client_evaluation_buffers(fedbn, torch.arange(3), fedbn.global_buffers())
    torch.testing.assert_close(own, trained.buffers)  # each client keeps its own statistics
    assert not torch.allclose(own[0], own[1])


def _bytes(module: FederatedModule) -> bytes:
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("personal", [[], ["bn"]])
def test_running_stats_round_trip_through_a_checkpoint_and_resume_exactly(personal):
    def fresh():
        strategy = Strategy(
            local_steps=None,
            local_epochs=1,
            local_lr=0.05,
            batch_size=4,
            server_lr=0.05,
            personal_parameters=personal,
        )
        module = FederatedModule(tiny_net(), strategy, CLASSES, execution="sequential")
        module.prepare(UnevenDomains())
        return module, strategy.configure_server_optimizer(module.net.parameters())

    straight, opt = fresh()
    for r in range(3):
        straight.step_round(r, opt)
    first, opt = fresh()
    for r in range(2):
        first.step_round(r, opt)
    saved = torch.load(io.BytesIO(_bytes(first)), weights_only=True)
    resumed, opt = fresh()
    resumed.load_state_dict(saved)
    assert torch.equal(resumed.global_buffers(), first.global_buffers())
    if personal:
        assert torch.equal(resumed.strategy.state.personal_buffers, first.strategy.state.personal_buffers)
    resumed.step_round(2, opt)
    torch.testing.assert_close(resumed.global_flat(), straight.global_flat(), atol=0, rtol=0)
    torch.testing.assert_close(resumed.global_buffers(), straight.global_buffers(), atol=0, rtol=0)
    clients = torch.arange(CLIENTS)
    torch.testing.assert_close(
        resumed.strategy.client_evaluation_buffers(resumed, clients, resumed.global_buffers()),
        straight.strategy.client_evaluation_buffers(straight, clients, straight.global_buffers()),
        atol=0,
        rtol=0,
    )


def test_training_accuracies_are_the_evaluated_models_on_the_training_partitions():
    """``train/acc``: the global model on every client's training samples together; ``train/personal_acc``
    per client: its personalised model (FedBN-style, own BN layer) on its own samples (issue 16)."""
    data = UnevenDomains()
    module = FederatedModule(
        tiny_net(),
        Strategy(local_steps=2, local_lr=0.3, batch_size=4, server_lr=1.0, personal_parameters=["bn"]),
        CLASSES,
    )
    module.prepare(data)
    optimizer = module.strategy.configure_server_optimizer(module.net.parameters())
    for r in range(3):
        module.step_round(r, optimizer)
    module._start_eval()
    train = module.client_data
    assert len(train.order) == 41  # the three clients' samples, nothing else
    with module.eval_mode():
        pred = module.forward_flat(module._eval_params, train.x[train.order], buffers=module._eval_buffers)
    expected = (pred.argmax(-1) == train.y[train.order]).float().mean()
    for size in (100, 3):  # chunking does not change it
        module.eval_batch_size = size
        torch.testing.assert_close(module.global_training_accuracy().float(), expected)
    clients = torch.arange(3)
    params, buffers = module.personalised_models(clients)
    assert not torch.allclose(params[0], params[2])  # each client evaluates its own BN layer
    per_client = module.accuracy_per_client(params, buffers, train)
    for k in clients.tolist():
        own = train.indices_of(k)
        with module.eval_mode():
            logits = module.forward_flat(params[k], train.x[own], buffers=buffers[k])
        manual = (logits.argmax(-1) == train.y[own]).float().mean()
        torch.testing.assert_close(per_client[k].float(), manual)
    torch.testing.assert_close(module.personalised_accuracy(train), per_client)


def test_majority_class_accuracy_predicts_each_clients_most_frequent_training_class():
    """``test/personal_majority_acc``'s per-client values: client 0 trains on classes (2, 2, 1) and is
    tested on (2, 0); client 1 on a 0 / 1 tie (the smaller id, 0, wins) tested on (1, 1, 0); client 2
    has no training samples (0) and client 3 no test samples (0, not NaN)."""
    train = ClientData.from_parts(
        torch.zeros(7, 1),
        torch.tensor([2, 2, 1, 0, 1, 5, 5]),
        [np.arange(0, 3), np.arange(3, 5), np.arange(0, 0), np.arange(5, 7)],
    )
    test = ClientData.from_parts(
        torch.zeros(5, 1),
        torch.tensor([2, 0, 1, 1, 0]),
        [np.arange(0, 2), np.arange(2, 5), np.arange(0, 1), np.arange(5, 5)],
    )
    torch.testing.assert_close(majority_class_accuracy(train, test), torch.tensor([0.5, 1 / 3, 0.0, 0.0]))
