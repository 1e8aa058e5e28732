"""FedPall and its baselines (local only, FedProto, MOON) on the engine: the extractor never leaves
the client, the broadcast overwrites only the classifier's non-BN weights, the discriminator is
frozen on the client but shapes h, the server trains the classifier on uploaded features,
vectorized = sequential (float64), and the MOON / FedProto objectives against hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from runner.federated import FederatedModule
from runner.federated.simulator import ClientData
from runner.methods.baselines.fedproto import FedProto, prototype_mse_objective
from runner.methods.baselines.local_only import LocalOnly
from runner.methods.baselines.moon import MOON, moon_objective
from runner.methods.fedpall import FedPall, fedpall_objective
from runner.models.small.fedpall_nets import ConvExtractor, FedPallNet

CLASSES, CLIENTS = 4, 3


class TinyDomains:
    """The parts of a datamodule that ``FederatedModule.prepare`` reads: 3 clients (domains with a
    client-specific offset), 4 classes, 8×8 images, class-dependent so that features carry the label."""

    eval_batch_size = 100

    def __init__(self, dtype=torch.float64, per_client: int = 24) -> None:
        g = torch.Generator().manual_seed(0)
        n = per_client * CLIENTS
        self.y = torch.arange(n) % CLASSES
        domain = torch.arange(n) // per_client
        self.x = (
            torch.randn(n, 3, 8, 8, generator=g, dtype=dtype)
            + self.y.view(-1, 1, 1, 1).to(dtype)
            + 2.0 * domain.view(-1, 1, 1, 1).to(dtype)
        )
        self.parts = [np.arange(k * per_client, (k + 1) * per_client) for k in range(CLIENTS)]

    def setup(self, stage=None):
        pass

    def client_data(self):
        return ClientData.from_parts(self.x, self.y, self.parts)

    def client_test_data(self):
        return ClientData.from_parts(self.x, self.y, self.parts)

    def class_groups(self):
        return None


def tiny_net() -> FedPallNet:
    torch.manual_seed(0)
    return FedPallNet(
        ConvExtractor(3, 8, (4, 4), 6), CLASSES, CLIENTS, hidden=5, discriminator_hidden=5
    ).double()


def make_module(strategy, execution="sequential", seed=0) -> FederatedModule:
    module = FederatedModule(tiny_net(), strategy, CLASSES, execution=execution, seed=seed)
    module.prepare(TinyDomains())
    return module


def fedpall(**kw) -> FedPall:
    base = dict(local_steps=3, local_lr=0.05, batch_size=8, server_lr=0.05, server_epochs=1)
    return FedPall(**{**base, **kw})


def train_step(module: FederatedModule, round_index: int) -> dict:
    """One training step without a Trainer: round, server optimizer step, server hook."""
    optimizer = getattr(module, "_test_optimizer", None)
    if optimizer is None:
        optimizer = module._test_optimizer = module.strategy.configure_server_optimizer(
            module.net.parameters()
        )
    return module.step_round(round_index, optimizer)


def test_the_extractor_never_leaves_the_client():
    module = make_module(fedpall())
    masks = module.strategy.masks(module.layout)
    initial = module.global_flat().clone()
    for r in range(2):
        out = train_step(module, r)
        assert torch.count_nonzero(out["direction"][masks["extractor"]]) == 0
    flat = module.global_flat()
    assert torch.equal(flat[masks["extractor"]], initial[masks["extractor"]])  # global extractor untouched
    personal = module.strategy.client_evaluation_parameters(module, torch.arange(CLIENTS), flat)
    extractors = personal[:, masks["extractor"]]
    assert not torch.allclose(extractors[0], extractors[1])  # each client its own extractor
    assert not torch.allclose(extractors[0], initial[masks["extractor"]])
    # the server did train the classifier and the discriminator
    assert not torch.equal(flat[masks["classifier"]], initial[masks["classifier"]])
    assert not torch.equal(flat[masks["discriminator"]], initial[masks["discriminator"]])
    assert module.strategy.prototypes.shape == (CLASSES, 6)


@pytest.mark.parametrize("mode", ["server", "local"])
def test_the_broadcast_overwrites_only_the_non_bn_classifier_weights(mode):
    module = make_module(fedpall(classifier_update=mode))
    strategy = module.strategy
    masks = strategy.masks(module.layout)
    clients = torch.arange(CLIENTS)
    g = torch.Generator().manual_seed(1)
    mine = torch.randn(strategy.state.personal.shape, generator=g, dtype=torch.float64)
    strategy.state.set("personal", clients, mine)
    module.set_global_flat(torch.randn(module.layout.dim, generator=g, dtype=torch.float64))
    flat = module.global_flat()
    plan = strategy.configure_train(0, flat)
    strategy.configure_local(module, plan, torch.arange(CLIENTS))
    own = torch.zeros_like(plan.start)
    own[:, strategy.personal_mask] = mine
    bn = masks["classifier"] & ~masks["broadcast"]
    assert bn.any() and masks["broadcast"].any()
    assert torch.equal(plan.start[:, masks["extractor"]], own[:, masks["extractor"]])
    assert torch.equal(plan.start[:, bn], own[:, bn])  # classifier BN stays personal
    assert torch.equal(
        plan.start[:, masks["discriminator"]], flat[masks["discriminator"]].expand(CLIENTS, -1)
    )
    expected = (
        flat[masks["broadcast"]].expand(CLIENTS, -1) if mode == "server" else own[:, masks["broadcast"]]
    )
    assert torch.equal(plan.start[:, masks["broadcast"]], expected)


def test_the_discriminator_gets_no_gradient_on_the_client_but_shapes_h():
    module = make_module(fedpall())
    masks = module.strategy.masks(module.layout)
    data = TinyDomains()
    x, y, flat = data.x[:8], data.y[:8], module.global_flat()

    def grad(beta):
        leaf = flat.clone().requires_grad_(True)
        loss = fedpall_objective(beta, 0.0, 3.0, masks["discriminator"], None)(
            module.forward_flat, leaf, x, y, {}
        )
        return torch.autograd.grad(loss, leaf)[0]

    with_kl, without = grad(1.0), grad(0.0)
    assert torch.count_nonzero(with_kl[masks["discriminator"]]) == 0
    assert not torch.allclose(with_kl[masks["extractor"]], without[masks["extractor"]])
    # local training leaves the discriminator where the server put it
    strategy = module.strategy
    plan = strategy.configure_train(0, flat)
    rows = torch.arange(CLIENTS)
    task = strategy.configure_local(module, plan, rows)
    xs, ys = module.client_batches(plan.clients, plan.generator)
    result = module.train_clients(plan.start, xs, ys, task)
    assert torch.equal(result.final[:, masks["discriminator"]], plan.start[:, masks["discriminator"]])
    assert not torch.equal(result.final[:, masks["extractor"]], plan.start[:, masks["extractor"]])


def test_the_server_step_trains_the_classifier_on_uploaded_features():
    module = make_module(fedpall(server_epochs=5, server_batch_size=16, server_train_lr=0.1))
    strategy = module.strategy
    masks = strategy.masks(module.layout)
    g = torch.Generator().manual_seed(2)
    labels = torch.arange(64) % CLASSES
    centres = 3.0 * torch.randn(CLASSES, 6, generator=g, dtype=torch.float64)
    features = centres[labels] + 0.3 * torch.randn(64, 6, generator=g, dtype=torch.float64)

    def loss() -> float:
        params = module.layout.unflatten(module.global_flat())
        head = {k.split(".", 1)[1]: v for k, v in params.items() if k.startswith("classifier.")}
        logits = torch.func.functional_call(module.net.classifier, head, (features,))
        return float(F.cross_entropy(logits, labels))

    before = loss()
    extractor = module.global_flat()[masks["extractor"]].clone()
    strategy._train_head(module, "classifier", features, labels, torch.Generator().manual_seed(0))
    assert loss() < 0.5 * before
    assert torch.equal(module.global_flat()[masks["extractor"]], extractor)  # only the classifier moved
    assert torch.count_nonzero(strategy.server_velocity[masks["classifier"]]) > 0
    assert torch.count_nonzero(strategy.server_velocity[~masks["classifier"]]) == 0


def test_uploads_build_prototypes_and_masked_mixed_features():
    module = make_module(fedpall(mask_keep=0.5))
    strategy = module.strategy
    strategy.masks(module.layout)
    plan = strategy.configure_train(0, module.global_flat())
    finals = plan.start.clone()
    mixed, labels, ids = strategy.uploads(module, plan, plan.clients, finals)
    assert mixed.shape == (CLIENTS * 24, 6) and torch.equal(ids, torch.arange(CLIENTS).repeat_interleave(24))
    for k in range(CLIENTS):  # one mask per client: the same ⌊0.5·6⌋ = 3 dimensions zero for all its samples
        rows = mixed[ids == k]
        assert int((rows == 0).all(0).sum()) >= 3
    assert torch.allclose(strategy.prototypes.norm(dim=1), strategy.prototypes.norm(dim=1).clamp_max(1.0))


@pytest.mark.parametrize("classifier_update", ["server", "average"])
def test_vectorized_equals_sequential(classifier_update):
    results = {}
    for execution in ("sequential", "vectorized"):
        module = make_module(fedpall(classifier_update=classifier_update), execution=execution)
        train_step(module, 0)  # round 1 then has prototypes: every term is active
        out = train_step(module, 1)
        personal = module.strategy.state.get("personal", torch.arange(CLIENTS))
        results[execution] = (out["direction"], personal, module.global_flat())
    for a, b in zip(results["sequential"], results["vectorized"], strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)


def test_the_ablation_switches():
    module = make_module(fedpall(classifier_update="average", beta=0.0))
    masks = module.strategy.masks(module.layout)
    initial = module.global_flat().clone()
    out = train_step(module, 0)
    flat = module.global_flat()
    assert torch.count_nonzero(out["direction"][masks["broadcast"]]) > 0  # the classifier is averaged
    assert torch.count_nonzero(out["direction"][~masks["broadcast"]]) == 0
    assert torch.equal(flat[masks["discriminator"]], initial[masks["discriminator"]])  # beta = 0: not trained


def test_moon_objective_against_a_hand_computation():
    net = tiny_net()
    module = FederatedModule(net, MOON(), CLASSES)
    g = torch.Generator().manual_seed(3)
    base = module.global_flat()
    flat, glob, prev = (
        base + 0.1 * torch.randn(base.shape, generator=g, dtype=torch.float64) for _ in range(3)
    )
    data = TinyDomains()
    x, y = data.x[:6], data.y[:6]
    mu, tau = 0.7, 0.5
    got = moon_objective(mu, tau)(module.forward_flat, flat, x, y, {"global": glob, "previous": prev})
    logits, z = module.forward_flat(flat, x, return_features=True)
    zg = module.forward_flat(glob, x, return_features=True)[1]
    zp = module.forward_flat(prev, x, return_features=True)[1]
    terms = []
    for i in range(6):
        cg = float(z[i] @ zg[i] / (z[i].norm() * zg[i].norm()))
        cp = float(z[i] @ zp[i] / (z[i].norm() * zp[i].norm()))
        terms.append(-math.log(math.exp(cg / tau) / (math.exp(cg / tau) + math.exp(cp / tau))))
    expected = float(F.cross_entropy(logits, y)) + mu * sum(terms) / 6
    assert float(got) == pytest.approx(expected, rel=1e-10)


def test_moon_keeps_each_clients_previous_model():
    module = make_module(MOON(local_steps=2, local_lr=0.05, batch_size=8, server_lr=0.05))
    initial = module.global_flat().clone()
    train_step(module, 0)
    previous = module.strategy.state.get("previous", torch.arange(CLIENTS))
    assert not torch.allclose(previous[0], previous[1])
    assert not torch.allclose(previous[0], initial)


def test_fedproto_objective_and_prototypes_against_a_hand_computation():
    module = make_module(FedProto(lam=0.5, local_steps=2, local_lr=0.05, batch_size=8))
    data = TinyDomains()
    x, y, flat = data.x[:8], data.y[:8], module.global_flat()
    prototypes = torch.arange(CLASSES * 6, dtype=torch.float64).view(CLASSES, 6) / 10
    present = torch.tensor([True, True, False, True])
    got = prototype_mse_objective(0.5, prototypes, present)(module.forward_flat, flat, x, y, {})
    logits, h = module.forward_flat(flat, x, return_features=True)
    sq = sum(float(((h[i] - prototypes[y[i]]) ** 2).sum()) for i in range(8) if present[y[i]])
    expected = float(F.cross_entropy(logits, y)) + 0.5 * sq / (8 * 6)
    assert float(got) == pytest.approx(expected, rel=1e-10)
    # the server's prototypes: count-weighted means of the clients' class means after local training
    initial = module.global_flat().clone()
    out = train_step(module, 0)
    assert torch.count_nonzero(out["direction"]) == 0 and torch.equal(module.global_flat(), initial)
    personal = module.strategy.state.get("personal", torch.arange(CLIENTS))
    stats = module.strategy.state.get(
        "personal_buffers", torch.arange(CLIENTS)
    )  # each client's BN statistics
    with module.eval_mode():  # prototypes from the clients' models in eval mode
        feats = torch.cat(
            [
                module.forward_flat(
                    personal[k], data.x[data.parts[k]], buffers=stats[k], return_features=True
                )[1]
                for k in range(CLIENTS)
            ]
        )
    labels = torch.cat([data.y[data.parts[k]] for k in range(CLIENTS)])
    for c in range(CLASSES):
        torch.testing.assert_close(module.strategy.prototypes[c], feats[labels == c].mean(0))


def test_local_only_communicates_nothing():
    module = make_module(LocalOnly(local_steps=2, local_lr=0.05, batch_size=8))
    initial = module.global_flat().clone()
    out = train_step(module, 0)
    assert torch.count_nonzero(out["direction"]) == 0 and torch.equal(module.global_flat(), initial)
    own = module.strategy.client_evaluation_parameters(module, torch.arange(CLIENTS), initial)
    assert not torch.allclose(own[0], own[1])


def test_lazy_server_buffers_restore_from_a_checkpoint():
    module = make_module(fedpall())
    train_step(module, 0)
    state = module.strategy.state_dict()
    fresh = make_module(fedpall())
    assert fresh.strategy.prototypes.numel() == 0
    fresh.strategy.load_state_dict(state)
    assert torch.equal(fresh.strategy.prototypes, module.strategy.prototypes)
    assert torch.equal(fresh.strategy.server_velocity, module.strategy.server_velocity)


def test_domain_reader_labels_domains_and_subsamples_each_training_set(tmp_path):
    from runner.data.domains.digits5 import Digits5Twin
    from runner.data.domains.fl_readers import DomainFolderReader

    domains = ["mnist", "svhn"]
    Digits5Twin(domains=domains, per_domain=50, size=12).ensure(str(tmp_path))
    full = DomainFolderReader(str(tmp_path), domains, size=12).load()
    half = DomainFolderReader(str(tmp_path), domains, size=12, train_fraction=0.5, seed=3).load()
    assert full.class_names == [str(c) for c in range(10)] and full.domain_names == domains
    assert full.x_train.shape[1:] == (3, 12, 12) and full.x_train.min() >= -1 and full.x_train.max() <= 1
    for k in range(2):
        n_full = int((full.domain_train == k).sum())
        assert int((half.domain_train == k).sum()) == n_full // 2  # 4 train digits per class -> 2
        assert torch.equal(half.y_train[half.domain_train == k].bincount(minlength=10), torch.full((10,), 2))
        assert (
            int((half.domain_test == k).sum()) == int((full.domain_test == k).sum()) == 10
        )  # test kept whole
