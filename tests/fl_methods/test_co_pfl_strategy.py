"""CO-PFL's strategy and the personalised-FL baselines on the engine (card papers/co_pfl.md)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from runner.data.images.common import ArraySplits
from runner.federated.datamodule import FederatedDataModule
from runner.federated.module import FederatedModule
from runner.federated.partition import IID
from runner.federated.simulator import LocalTask, LocalTraining, ParamLayout
from runner.methods.baselines.apfl import APFL, apfl_objective, apfl_step
from runner.methods.baselines.ditto import Ditto
from runner.methods.baselines.fedala import FedALA, ala_objective, clipped_sgd_step
from runner.methods.baselines.fedavg_ft import FedAvgFT
from runner.methods.baselines.fedrep import FedRep, alternating_step
from runner.methods.co_pfl import COPFL, mask_aware_adam_step
from runner.methods.co_pfl.contribution import contribution_weights
from runner.methods.co_pfl.personalisation import MaskAwareAdam
from runner.models.small import MLP, SmallCNN


class _Reader:
    def __init__(self, splits: ArraySplits) -> None:
        self.splits = splits

    def load(self) -> ArraySplits:
        return self.splits


def _module(strategy, clients: int = 4, seed: int = 0) -> FederatedModule:
    g = torch.Generator().manual_seed(seed)
    n = 40 * clients
    y = torch.arange(n) % 3
    x = torch.randn(n, 4, generator=g) + F.one_hot(y, 4).float() * 2  # learnable
    splits = ArraySplits(x, y, x[:30], y[:30], ["a", "b", "c"])
    dm = FederatedDataModule(
        reader=lambda root: _Reader(splits),
        root="/unused",
        num_clients=clients,
        partition=IID(),
        client_test_fraction=0.25,
        seed=seed,
    )
    torch.manual_seed(seed)
    module = FederatedModule(MLP(4, 3, hidden=(5,)), strategy, 3, execution="sequential", seed=seed)
    module.prepare(dm)
    return module


def _step_server(module, direction) -> None:
    optimizer = module.strategy.configure_server_optimizer(module.net.parameters())
    for p, g in zip(module.net.parameters(), module.layout.unflatten(direction).values(), strict=True):
        p.grad = g.to(p.dtype).clone()
    optimizer.step()


def _copfl(**kw) -> COPFL:
    base = dict(local_steps=3, local_lr=0.01, batch_size=8, rate=0.2, budget=0.5)
    return COPFL(**{**base, **kw})


# ---- CO-PFL: masked aggregation ------------------------------------------------------------------
def test_masked_aggregation_leaves_personal_entries_untouched():
    module = _module(_copfl(weighting="data_size"))
    strategy = module.strategy
    d = module.layout.dim
    old = module.global_flat().clone()
    plan = strategy.configure_train(0, old)
    strategy.configure_local(module, plan, torch.arange(4))
    final = old + torch.randn(4, d)
    masks = torch.zeros(4, d)
    masks[:, :3] = 1  # personal for every client: the global keeps its value
    masks[1:, 3] = 1  # shared only by client 0: the global takes client 0's value
    strategy._round.update(clients=plan.clients, final=final, start=plan.start, masks=masks)
    sizes = torch.tensor([1.0, 2.0, 3.0, 4.0])
    direction = strategy.aggregate_train(plan, final - old, sizes)
    _step_server(module, direction)
    new = module.global_flat()
    assert torch.allclose(new[:3], old[:3])
    assert torch.allclose(new[3], final[0, 3], atol=1e-6)
    expected = (sizes[:, None] * final[:, 4:]).sum(0) / sizes.sum()
    assert torch.allclose(new[4:], expected, atol=1e-5)


def test_round_keeps_personal_entries_in_the_client_state():
    module = _module(_copfl())
    strategy = module.strategy
    for r in range(3):
        out = module.run_round(r)
        _step_server(module, out["direction"])
    masks = strategy.state.get("mask", torch.arange(4)) > 0.5
    assert masks.any() and not masks.all()
    fraction = masks.float().mean(1)
    assert bool((fraction <= 0.5 + 1e-6).all())  # the budget r
    personal = strategy.client_evaluation_parameters(module, torch.arange(4), module.global_flat())
    local = strategy.state.get("local", torch.arange(4))
    glob = module.global_flat().expand_as(local)
    assert torch.equal(personal[masks], local[masks])
    assert torch.equal(personal[~masks], glob[~masks])


# ---- CO-PFL: contribution weights replace data-size weights --------------------------------------
def test_contribution_weights_replace_data_size_weights():
    module = _module(_copfl(weighting="contribution", data_batch_size=16))
    strategy = module.strategy
    d = module.layout.dim
    old = module.global_flat().clone()
    plan = strategy.configure_train(0, old)
    strategy.configure_local(module, plan, torch.arange(4))
    g = torch.Generator().manual_seed(1)
    updates = torch.randn(4, d, generator=g)
    updates[3] = updates[:3].mean(0)  # client 3 agrees with the others: the smallest Γ_grad
    final = old + 0.1 * updates
    masks = torch.zeros(4, d)
    strategy._round.update(clients=plan.clients, final=final, start=plan.start, masks=masks)
    sizes = torch.tensor([10.0, 10.0, 10.0, 70.0])
    generator_copy = torch.Generator()
    generator_copy.set_state(plan.generator.get_state())
    direction = strategy.aggregate_train(plan, final - old, sizes)
    # expected α by hand: Γ_grad = 1 − cos(Δ_n, mean of the others); Γ_data = loss of w_{−n} on n's batch
    delta = final - old
    grad = torch.stack(
        [
            1 - F.cosine_similarity(delta[n], delta[[m for m in range(4) if m != n]].mean(0), dim=0)
            for n in range(4)
        ]
    )
    idx = module.client_data.sample_indices(plan.clients, 1, 16, generator_copy)[:, 0]
    data = []
    for n in range(4):
        w = torch.tensor([0.0 if m == n else float(sizes[m]) for m in range(4)])
        w_minus = (w[:, None] * final).sum(0) / w.sum()
        logits = module.forward_flat(w_minus, module.client_data.x[idx[n]])
        data.append(F.cross_entropy(logits, module.client_data.y[idx[n]]))
    alpha = contribution_weights(grad, torch.stack(data).detach())
    assert torch.allclose(strategy._round["alpha"], alpha, atol=1e-5)
    assert alpha[3] < alpha[:3].min()  # the agreeing client counts less, despite its 70 % of the data
    new = old - strategy.server_lr * direction
    assert torch.allclose(new, (alpha[:, None] * final).sum(0), atol=1e-5)
    by_size = (sizes[:, None] * final).sum(0) / sizes.sum()
    assert not torch.allclose(new, by_size, atol=1e-3)


# ---- MAMO ----------------------------------------------------------------------------------------
def test_mamo_step_touches_only_its_groups_moments():
    torch.manual_seed(0)
    d = 6
    params = torch.randn(2, d, dtype=torch.float64)
    personal = torch.tensor([[1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0]], dtype=torch.float64)
    zeros = torch.zeros(2, d, dtype=torch.float64)
    m_p0 = torch.randn(2, d, dtype=torch.float64)  # persisted personal moments
    count = torch.zeros(2, 1, dtype=torch.float64)
    state = (personal, zeros, zeros, count, m_p0, m_p0.abs(), count + 2)
    step = mask_aware_adam_step(0.01, (0.9, 0.999), 1e-8)
    reference = MaskAwareAdam((d,), lr=0.01)
    reference.moments["personal"].update(m=m_p0[0].float().clone(), v=m_p0[0].abs().float().clone(), t=2)
    ref_param = params[0].float().clone()
    for s in range(3):
        grads = torch.randn(2, d, dtype=torch.float64)
        params, state = step(params, grads, state, s)
        reference.step(ref_param, grads[0].float(), personal[0] > 0.5)
    _, m_s, v_s, t_s, m_p, v_p, t_p = state
    p0 = personal[0] > 0.5
    assert torch.equal(m_s[0, p0], zeros[0, p0]) and torch.equal(v_s[0, p0], zeros[0, p0])
    assert torch.equal(m_p[0, ~p0], m_p0[0, ~p0])  # personal moments unchanged on shared coordinates
    assert not torch.equal(m_p[0, p0], m_p0[0, p0])
    assert torch.equal(m_p[1], m_p0[1])  # a client without personal entries never touches them
    assert t_s.flatten().tolist() == [3.0, 3.0] and t_p.flatten().tolist() == [5.0, 2.0]
    assert torch.allclose(params[0].float(), ref_param, atol=1e-5)  # = the tested reference MaskAwareAdam


def test_mamo_persists_personal_moments_across_rounds():
    module = _module(_copfl())
    out = module.run_round(0)
    _step_server(module, out["direction"])
    strategy = module.strategy
    assert strategy.state.get("t_personal", torch.arange(4)).sum() == 0  # no personal entries in round 1
    out = module.run_round(1)
    m_p = strategy.state.get("m_personal", torch.arange(4))
    masks = strategy.state.get("mask", torch.arange(4)) > 0.5
    assert (m_p != 0).any()
    assert bool((m_p[~masks] == 0).all())


# ---- FedRep --------------------------------------------------------------------------------------
def test_fedrep_alternation_freezes_the_right_coordinates():
    head = torch.tensor([False, False, True, True])
    step = alternating_step(head, head_steps=2, head_lr=0.1, body_lr=0.2, weight_decay=0.0)
    params, grads = torch.zeros(3, 4), torch.ones(3, 4)
    p1, _ = step(params, grads, (), 0)
    assert torch.equal(p1[:, ~head], params[:, ~head]) and bool((p1[:, head] == -0.1).all())
    p2, _ = step(params, grads, (), 2)
    assert torch.equal(p2[:, head], params[:, head]) and bool((p2[:, ~head] == -0.2).all())


def test_fedrep_round_averages_the_body_and_keeps_heads():
    module = _module(
        FedRep(head_steps=2, local_steps=3, local_lr=0.05, batch_size=8, personal_parameters=["classifier"])
    )
    strategy = module.strategy
    assert strategy.local_steps == 5 and strategy.body_steps == 3
    head = module.layout.mask(["classifier"])
    old = module.global_flat().clone()
    out = module.run_round(0)
    assert bool((out["honest"][:, head] == 0).all()) and bool((out["honest"][:, ~head] != 0).any())
    heads = strategy.state.get("personal", torch.arange(4))
    assert not torch.allclose(heads, old[head].expand_as(heads))  # the heads trained
    assert not torch.allclose(heads[0], heads[1])


# ---- Ditto ---------------------------------------------------------------------------------------
def test_ditto_personal_model_differs_from_global():
    module = _module(Ditto(lam=0.1, local_steps=3, local_lr=0.05, batch_size=8))
    for r in range(2):
        out = module.run_round(r)
        _step_server(module, out["direction"])
    glob = module.global_flat()
    personal = module.strategy.client_evaluation_parameters(module, torch.arange(4), glob)
    assert personal.shape == (4, glob.numel())
    assert all(not torch.allclose(personal[k], glob, atol=1e-4) for k in range(4))


def test_ditto_proximal_pull_grows_with_lambda():
    gaps = []
    for lam in (0.0, 10.0):  # lr·λ = 0.5 < 2: a stable pull
        module = _module(Ditto(lam=lam, local_steps=3, local_lr=0.05, batch_size=8, personal_steps=6))
        start = module.global_flat().clone()
        module.run_round(0)
        personal = module.strategy.state.get("personal_model", torch.arange(4))
        gaps.append((personal - start).norm(dim=1).mean().item())
    assert gaps[1] < gaps[0]


# ---- APFL, FedALA, FedAvg + FT -------------------------------------------------------------------
def test_apfl_learns_alpha_in_unit_interval():
    module = _module(APFL(alpha=0.5, local_steps=3, local_lr=0.05, batch_size=8))
    out = module.run_round(0)
    assert out["direction"].shape == (module.layout.dim,)
    alpha = module.strategy.state.get("alpha", torch.arange(4))
    assert bool(((alpha >= 0) & (alpha <= 1)).all()) and not torch.allclose(
        alpha, torch.full_like(alpha, 0.5)
    )
    fixed = _module(APFL(alpha=0.5, alpha_lr=0.0, local_steps=3, local_lr=0.05, batch_size=8))
    fixed.run_round(0)
    assert torch.equal(fixed.strategy.state.get("alpha", torch.arange(4)), torch.full((4, 1), 0.5))


def test_fedala_first_round_is_fedavg_then_mixes():
    module = _module(FedALA(layer_idx=2, ala_steps=2, local_steps=3, local_lr=0.05, batch_size=8))
    start = module.global_flat().clone()
    plan = module.strategy.configure_train(0, start)
    module.strategy.configure_local(module, plan, torch.arange(4))
    assert torch.equal(plan.start, start.expand_as(plan.start))  # θ_k = w: ALA is a no-op
    out = module.run_round(0)
    _step_server(module, out["direction"])
    out = module.run_round(1)
    weights = module.strategy.state.get("ala_weights", torch.arange(4))
    higher = module.layout.mask(module.layout.names[-2:])
    assert bool(((weights >= 0) & (weights <= 1)).all())
    assert not torch.equal(weights[:, higher], torch.ones_like(weights[:, higher]))


def test_fedavg_ft_personalises_by_fine_tuning():
    module = _module(FedAvgFT(finetune_steps=3, local_steps=2, local_lr=0.05, batch_size=8))
    glob = module.global_flat()
    tuned = module.strategy.client_evaluation_parameters(module, torch.arange(4), glob)
    again = module.strategy.client_evaluation_parameters(module, torch.arange(4), glob)
    assert torch.equal(tuned, again)  # a fixed generator: repeated evaluations agree
    assert all(not torch.allclose(tuned[k], glob) for k in range(4))


def test_fine_tuning_evaluation_runs_inside_lightnings_inference_mode():
    """Lightning's val / test loops run under torch.inference_mode: a strategy that fine-tunes at
    evaluation (sequential execution: torch.autograd.grad) must still get gradients (it failed with
    'element 0 of tensors does not require grad')."""
    module = _module(FedAvgFT(finetune_steps=3, local_steps=2, local_lr=0.05, batch_size=8))
    outside = module.personalised_accuracy()
    with torch.inference_mode():
        inside = module.personalised_accuracy()
    torch.testing.assert_close(inside, outside)


# ---- vectorized = sequential (float64) -----------------------------------------------------------
def _clients(steps: int, count: int = 3, width: int | None = None):
    torch.manual_seed(0)
    net = SmallCNN(1, 4, image_size=8, channels=(2, 3), hidden=6, groups=1).double()
    layout = ParamLayout(net)
    flat = layout.flatten([p.detach() for p in net.parameters()])
    start = flat.expand(count, -1).clone() + 0.01 * torch.randn(count, layout.dim, dtype=torch.float64)
    xs = torch.randn(count, steps, 5, 1, 8, 8, dtype=torch.float64)
    ys = torch.randint(0, 4, (count, steps, 5))
    return net, layout, start, xs, ys


def _tasks(layout, start):
    d = start.shape[1]
    mask = (torch.rand(start.shape, dtype=torch.float64) < 0.3).to(torch.float64)
    zeros, count = torch.zeros_like(start), torch.zeros(start.shape[0], 1, dtype=torch.float64)
    mamo = (
        LocalTask(
            step=mask_aware_adam_step(0.01, (0.9, 0.999), 1e-8),
            state=(mask, zeros, zeros, count, zeros + 0.01, zeros + 0.02, count + 1),
        ),
        start,
    )
    apfl_start = torch.cat(
        [start, start + 0.01, torch.full((start.shape[0], 1), 0.4, dtype=torch.float64)], 1
    )
    apfl = (LocalTask(objective=apfl_objective, step=apfl_step(0.05, 0.1)), apfl_start)
    base, delta = start, torch.randn_like(start) * 0.1
    ala = (
        LocalTask(
            objective=ala_objective, context={"base": base, "delta": delta}, step=clipped_sgd_step(1.0)
        ),
        torch.full_like(start, 0.7),
    )
    assert d == layout.dim
    return {"mamo": mamo, "apfl": apfl, "fedala": ala}


@pytest.mark.parametrize("name", ["mamo", "apfl", "fedala"])
def test_vectorized_equals_sequential_float64(name):
    net, layout, start, xs, ys = _clients(steps=3)
    task, rows = _tasks(layout, start)[name]
    training = LocalTraining(net, layout, lr=0.05, steps=3)
    vec = training.run_task("vectorized", rows, xs, ys, task)
    seq = training.run_task("sequential", rows, xs, ys, task)
    assert torch.allclose(vec.final, seq.final, atol=1e-9, rtol=0)
    assert not torch.allclose(vec.final, rows)
    for a, b in zip(vec.state, seq.state, strict=True):
        assert torch.allclose(a, b, atol=1e-9, rtol=0)


# ---- every strategy config runs rounds on the CIFAR-10 twin experiment ----------------------------
STRATEGY_CONFIGS = [
    "co_pfl",
    "co_pfl_no_contribution",
    "co_pfl_no_mask",
    "co_pfl_no_mamo",
    "co_pfl_layer",
    "fedavg_ft",
    "fedper",
    "fedrep",
    "ditto",
    "apfl",
    "fedala",
]


@pytest.mark.parametrize("strategy", STRATEGY_CONFIGS)
def test_strategy_config_runs_rounds(make_cfg, strategy):
    from hydra.utils import instantiate

    from runner.train import accepted_kwargs, build_networks, data_properties

    cfg = make_cfg(
        "experiment=co_pfl_cifar10",
        f"fl_strategy={strategy}",
        "dataset.twin.train_per_class=20",
        "dataset.twin.test_per_class=5",
        "dataset.num_clients=4",
        "dataset.partition.alpha=1.0",
        "dataset.partition.min_size=2",
        "model.channels=[2,4]",
        "model.hidden=8",
        "fl_strategy.local_steps=2",
        "fl_strategy.local_epochs=null",
        "fl_strategy.batch_size=8",
    )
    datamodule = instantiate(cfg.dataset)
    properties = data_properties(datamodule)
    module = instantiate(
        cfg.method, **build_networks(cfg, properties), **accepted_kwargs(cfg.method, properties)
    )
    module.prepare(datamodule)
    for r in range(2):
        out = module.run_round(r)
        assert torch.isfinite(out["direction"]).all()
        _step_server(module, out["direction"])
    acc = module.personalised_accuracy()
    assert acc.shape == (4,) and bool(((acc >= 0) & (acc <= 1)).all())


# ---- readers -------------------------------------------------------------------------------------
def test_cifar10c_reader_pools_corruption_sets_as_domains(tmp_path):
    from runner.data.domains.cifar10c_fl import Cifar10CReader, CIFAR10CTwinFromCifarTwin
    from runner.data.images import ProceduralCifarTwin

    twin = CIFAR10CTwinFromCifarTwin(
        str(tmp_path / "cifar"),
        ProceduralCifarTwin(train_per_class=2, test_per_class=10),
        corruptions=["gaussian_noise", "contrast"],
    )
    root = twin.ensure(str(tmp_path / "c"))
    splits = Cifar10CReader(root, ["gaussian_noise", "contrast"], [1, 5], test_fraction=0.2).load()
    assert splits.domain_names == ["gaussian_noise@1", "gaussian_noise@5", "contrast@1", "contrast@5"]
    assert len(splits.y_train) == 4 * 80 and len(splits.y_test) == 4 * 20  # 100 images per set, 20 % held out
    assert torch.equal(splits.domain_train.bincount(), torch.full((4,), 80))
    assert splits.x_train.shape[1:] == (3, 32, 32)
    # severity 5 noise differs from severity 1 on the same source images
    assert not torch.allclose(
        splits.x_train[splits.domain_train == 0].mean(), splits.x_train[splits.domain_train == 3].mean()
    )


def test_cinic10_and_mini_imagenet_readers_on_their_twins(tmp_path):
    from runner.data.domains.cinic10_fl import Cinic10Reader, MiniImageNetReader
    from runner.data.domains.styled_objects import StyledObjectsTwin, mini_imagenet_wnids

    names = ["airplane", "automobile", "bird"]
    root = StyledObjectsTwin("cinic10", names, per_class=10, size=32).ensure(str(tmp_path / "cinic"))
    cinic = Cinic10Reader(root).load()
    assert cinic.class_names == sorted(names)
    assert len(cinic.y_train) == 3 * 8 and len(cinic.y_test) == 3 * 2  # train + valid pooled
    root = StyledObjectsTwin("mini_imagenet", mini_imagenet_wnids(4), per_class=10, size=16).ensure(
        str(tmp_path / "mini")
    )
    mini = MiniImageNetReader(root, size=16, test_fraction=0.2).load()
    assert len(mini.class_names) == 4 and len(mini.y_test) == 4 * 2 and mini.x_train.shape[1:] == (3, 16, 16)
