"""FedSM on the engine: the retrained classifier is what evaluation uses, the no-semantics switch
selects uniformly, the backbone is FedAvg, vectorized = sequential, and the server hook is a
deterministic function of (seed, round, global model) kept in checkpointed buffers."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from hydra.utils import instantiate

from runner.compose import compose_run_config
from runner.data.images.semantic_cifar import (
    CIFAR100_COARSE,
    CIFAR100_FINE,
    SemanticCifarTwin,
    class_codes,
)
from runner.federated import FederatedModule
from runner.federated.simulator import ClientData, ParamLayout
from runner.methods.fedsm import FedSM
from runner.methods.fedsm.semantics import pseudo_features
from runner.models.small.resnet8 import ResNet8

NAMES = ["cat", "dog", "car", "truck"]


class FixedEncoder:
    """A stand-in text encoder: fixed embeddings (cat = dog, car = truck, the pairs orthogonal)."""

    def __init__(self, table: tuple[tuple[float, ...], ...]) -> None:
        self.table = torch.tensor(table)

    def encode(self, names):
        return self.table[: len(names)]


PAIRS = functools.partial(FixedEncoder, ((1.0, 0.0), (1.0, 0.0), (0.0, 1.0), (0.0, 1.0)))


class TinyData:
    """The parts of a datamodule that ``FederatedModule.prepare`` reads: 4 clients, 4 classes."""

    eval_batch_size = 100

    def __init__(self, dtype=torch.float64, n: int = 160, clients: int = 4) -> None:
        g = torch.Generator().manual_seed(0)
        self.y = torch.arange(n) % 4
        # class-dependent images so features carry the label
        self.x = torch.randn(n, 3, 8, 8, generator=g, dtype=dtype) + self.y.view(-1, 1, 1, 1).to(dtype)
        order = np.random.default_rng(0).permutation(n)
        self.parts = [np.sort(p) for p in np.array_split(order, clients)]

    def setup(self, stage=None):
        pass

    def client_data(self):
        return ClientData.from_parts(self.x, self.y, self.parts)

    def client_test_data(self):
        return None

    def class_groups(self):
        return None


def make_module(semantic=True, execution="sequential", seed=0, retrain_from_round=1, **kw) -> FederatedModule:
    torch.manual_seed(0)
    net = ResNet8(3, 4, widths=(4, 4, 4), groups=2).double()
    strategy = FedSM(
        text_encoder=PAIRS,
        class_names=NAMES,
        retrain_from_round=retrain_from_round,
        semantic_selection=semantic,
        per_class=6,
        classifier_epochs=2,
        clients_per_round=3,
        local_steps=2,
        local_lr=0.05,
        batch_size=8,
        server_lr=0.05,
        **kw,
    )
    module = FederatedModule(net, strategy, 4, execution=execution, seed=seed)
    module.prepare(TinyData())
    return module


def fedavg_step(module: FederatedModule, round_index: int) -> None:
    """One training step without a Trainer: round, server optimizer step, server hook."""
    optimizer = getattr(module, "_test_optimizer", None)
    if optimizer is None:
        optimizer = module._test_optimizer = module.strategy.configure_server_optimizer(
            module.net.parameters()
        )
    module.step_round(round_index, optimizer)


def test_the_retrained_classifier_is_what_evaluation_uses():
    module = make_module()
    strategy = module.strategy
    fedavg_step(module, 0)  # before retrain_from_round: evaluation = the global model
    assert torch.equal(strategy.evaluation_parameters(module, module.global_flat()), module.global_flat())
    fedavg_step(module, 1)
    flat = module.global_flat()
    evaluated = strategy.evaluation_parameters(module, flat)
    head = strategy.classifier_mask(module)
    assert torch.equal(evaluated[~head], flat[~head])  # the global backbone
    assert not torch.allclose(evaluated[head], flat[head])  # a different (retrained) classifier
    assert torch.equal(evaluated[head], strategy.retrained[head])
    # the module's evaluation path (val/test) runs with exactly these parameters
    module._start_eval()
    assert torch.equal(module._eval_params, evaluated)
    x = TinyData().x[:10]
    _, features = module.forward_flat(flat, x, return_features=True)
    w = module.layout.unflatten(evaluated)
    manual = features @ w["classifier.weight"].T + w["classifier.bias"]
    assert torch.allclose(module.forward_flat(module._eval_params, x), manual)
    # the global model's own classifier is not overwritten: it keeps training with FedAvg
    assert torch.equal(module.global_flat(), flat)


def test_the_average_is_data_size_weighted_over_the_rounds_participants(monkeypatch):
    import runner.methods.fedsm.strategy as fedsm_strategy

    module = make_module()
    strategy = module.strategy
    fedavg_step(module, 0)
    flat = module.global_flat()
    clients = torch.tensor([0, 2])
    per_client, averaged = [], []
    real_retrain = fedsm_strategy.retrain_linear_classifier

    def recording(*args, **kwargs):
        head = real_retrain(*args, **kwargs)
        per_client.append((head.weight.detach().clone(), head.bias.detach().clone()))
        return head

    real_with = strategy.with_classifier

    def capture(module_, flat_, weight, bias):
        averaged.append((weight, bias))
        return real_with(module_, flat_, weight, bias)

    monkeypatch.setattr(fedsm_strategy, "retrain_linear_classifier", recording)
    monkeypatch.setattr(strategy, "with_classifier", capture)
    out = strategy.retrain(module, flat, clients, torch.Generator().manual_seed(3))
    share = module.client_sizes[clients].double() / module.client_sizes[clients].sum()
    expected_w = share[0] * per_client[0][0] + share[1] * per_client[1][0]
    expected_b = share[0] * per_client[0][1] + share[1] * per_client[1][1]
    assert torch.allclose(averaged[0][0], expected_w) and torch.allclose(averaged[0][1], expected_b)
    w = module.layout.unflatten(out)
    assert torch.allclose(w["classifier.weight"], expected_w) and torch.allclose(
        w["classifier.bias"], expected_b
    )


def test_no_semantics_switch_selects_uniformly():
    semantic, ablation = make_module(semantic=True), make_module(semantic=False)
    s = semantic.strategy.selection_relevance(semantic)
    u = ablation.strategy.selection_relevance(ablation)
    assert torch.equal(u, torch.ones(4, 4))  # constant: every local feature equally likely
    assert s[0, 1] > 0.99 and s[0, 2].abs() < 1e-6  # cat ~ dog, cat ⟂ car (the fixed embeddings)
    # drawn source classes for the pseudo-features of class 0 (cat): features point along e_label
    labels = torch.arange(400) % 4
    features = torch.nn.functional.one_hot(labels, 5).double()
    prototypes = torch.zeros(4, 5, dtype=torch.float64)
    prototypes[:, 4] = 1.0
    drawn = {}
    for name, relevance in (("semantic", s), ("uniform", u)):
        z, y = pseudo_features(
            features,
            labels,
            prototypes,
            relevance.double(),
            per_class=40,
            generator=torch.Generator().manual_seed(0),
        )
        source = z[y == 0, :4].argmax(1)
        drawn[name] = torch.bincount(source, minlength=4).double() / len(source)
    assert drawn["semantic"][2:].sum() < 0.05  # cat draws (almost) only cat / dog features
    assert drawn["uniform"][2:].sum() > 0.3  # uniform: about half from car / truck
    assert (drawn["uniform"] > 0.1).all()


def test_fedsm_backbone_is_the_fedavg_config(tmp_path):
    """FedSM's training rounds are FedAvg's (the fl_strategy=fedavg config) exactly."""
    cfg = compose_run_config(
        [
            "experiment=fedsm_cifar10lt",
            "fl_strategy=fedavg",
            "fl_strategy.clients_per_round=3",
            "fl_strategy.local_steps=2",
            "fl_strategy.local_epochs=null",
            "fl_strategy.local_lr=0.05",
            "fl_strategy.batch_size=8",
        ],
        output_dir=tmp_path / "run",
        root_dir=tmp_path,
    )
    fedsm = make_module(retrain_from_round=10)
    torch.manual_seed(0)
    net = ResNet8(3, 4, widths=(4, 4, 4), groups=2).double()
    fedavg = FederatedModule(net, instantiate(cfg.fl_strategy), 4, execution="sequential", seed=0)
    fedavg.prepare(TinyData())
    assert torch.equal(fedsm.global_flat(), fedavg.global_flat())
    for r in range(3):
        fedavg_step(fedsm, r)
        fedavg_step(fedavg, r)
    assert torch.allclose(fedsm.global_flat(), fedavg.global_flat(), atol=1e-12)


def test_vectorized_and_sequential_paths_agree():
    seq = make_module(execution="sequential", retrain_from_round=0)
    vec = make_module(execution="vectorized", retrain_from_round=0)
    for r in range(2):
        fedavg_step(seq, r)
        fedavg_step(vec, r)
    assert torch.allclose(seq.global_flat(), vec.global_flat(), atol=1e-6)
    assert torch.allclose(seq.strategy.retrained, vec.strategy.retrained, atol=1e-6)


def test_server_hook_is_deterministic_given_seed_and_resume_safe():
    a, b = make_module(retrain_from_round=0), make_module(retrain_from_round=0)
    fedavg_step(a, 0)
    fedavg_step(b, 0)
    assert torch.equal(a.strategy.retrained, b.strategy.retrained)
    # a pure function of (seed, round, global model): rerunning the hook gives the same classifier,
    # another round or seed another one
    before = a.strategy.retrained.clone()
    a.strategy.server_update(a, 0)
    assert torch.equal(a.strategy.retrained, before)
    a.strategy.server_update(a, 1)
    assert not torch.equal(a.strategy.retrained, before)
    other = make_module(retrain_from_round=0, seed=1)
    other.set_global_flat(b.global_flat())
    other.strategy.server_update(other, 0)
    assert not torch.equal(other.strategy.retrained, b.strategy.retrained)
    # the classifier lives in checkpointed buffers: a restored strategy evaluates the same
    restored = make_module(retrain_from_round=0)
    restored.load_state_dict(b.state_dict())
    assert bool(restored.strategy.has_retrained)
    flat = b.global_flat()
    assert torch.equal(
        restored.strategy.evaluation_parameters(restored, flat), b.strategy.evaluation_parameters(b, flat)
    )
    # and the hook leaves the global RNG alone
    state = torch.get_rng_state()
    b.strategy.server_update(b, 2)
    assert torch.equal(torch.get_rng_state(), state)


def test_retraining_starts_in_the_last_part_of_training():
    module = make_module(retrain_from_round=None, retrain_fraction=0.2, total_rounds=10)
    assert module.strategy.first_retraining_round(module) == 8
    module.strategy.server_update(module, 7)
    assert not bool(module.strategy.has_retrained)
    module.strategy.server_update(module, 8)
    assert bool(module.strategy.has_retrained)


def test_resnet8_is_an_fl_model_with_features():
    net = ResNet8(3, 10)
    ParamLayout(net)  # no running-statistics buffers
    logits, features = net(torch.randn(2, 3, 32, 32), return_features=True)
    assert logits.shape == (2, 10) and features.shape == (2, 64)
    ParamLayout(ResNet8(3, 10, norm="batch"))
    with pytest.raises(ValueError):
        ResNet8(3, 10, norm="layer")


class SeededEncoder:
    """A stand-in class-name encoder: a seeded random embedding per name, with the second name a
    near copy of the first (so its nearest neighbour is known)."""

    def encode(self, names):
        table = torch.randn(len(names), 16, generator=torch.Generator().manual_seed(len(names)))
        table[1] = table[0] + 0.1 * table[1]
        return torch.nn.functional.normalize(table, dim=1)


SEEDED = functools.partial(SeededEncoder)


def test_twin_codes_keep_the_encoders_distances_and_their_ordering():
    embeddings = SeededEncoder().encode(list(range(10)))
    encoder_dist = torch.cdist(embeddings.double(), embeddings.double())
    off = ~torch.eye(10, dtype=torch.bool)
    exact = torch.cdist(*(torch.from_numpy(class_codes(embeddings, 9, power=1.0)),) * 2)
    ratio = exact[off] / encoder_dist[off]
    assert torch.allclose(ratio, ratio.mean().expand_as(ratio), rtol=1e-6)  # same geometry, rescaled
    assert float(exact[off].mean()) == pytest.approx(1.0)
    sharp = torch.cdist(*(torch.from_numpy(class_codes(embeddings, 9, power=2.0)),) * 2)
    assert torch.equal(sharp.argsort(1)[:, 1], encoder_dist.argsort(1)[:, 1])  # same nearest names

    def nearest_over_mean(dist):  # classes 2..9 (0 and 1 are a near copy pair)
        dist = dist.clone().fill_diagonal_(float("inf"))
        return float((dist.min(1).values[2:] / dist[off].mean()).mean())

    assert nearest_over_mean(sharp) < nearest_over_mean(encoder_dist) - 0.05  # near names come closer


def test_semantic_twin_images_follow_the_encoder_and_cifar100_has_real_names(tmp_path):
    from runner.data.images import CifarReader
    from runner.data.images.cifar import load_cifar_pickle

    twin = SemanticCifarTwin("cifar10", train_per_class=30, test_per_class=5, text_encoder=SEEDED)
    root = twin.ensure(str(tmp_path / "c10"))
    splits = CifarReader(root, variant="cifar10").load()
    means = torch.stack([splits.x_train[splits.y_train == c].mean(0).flatten() for c in range(10)])
    image_dist = torch.cdist(means, means)
    image_dist.fill_diagonal_(float("inf"))
    assert int(image_dist[0].argmin()) == 1  # the encoder's nearest name is the nearest-looking class
    other = SemanticCifarTwin("cifar10", train_per_class=30, test_per_class=5, text_encoder=PAIRS)
    assert other.recipe_hash() != twin.recipe_hash()  # another encoder: another twin

    twin = SemanticCifarTwin(
        "cifar100", train_per_class=1, test_per_class=1, text_encoder=SEEDED, code_dims=8
    )
    root = twin.ensure(str(tmp_path / "c100"))
    splits = CifarReader(root, variant="cifar100").load()
    assert splits.class_names == CIFAR100_FINE and sorted(splits.y_train.tolist()) == list(range(100))
    batch = load_cifar_pickle(f"{root}/cifar-100-python/train")
    coarse_of = dict(zip(batch[b"fine_labels"], batch[b"coarse_labels"], strict=True))
    groups = sorted(CIFAR100_COARSE)
    lion = CIFAR100_FINE.index("lion")
    assert CIFAR100_FINE[lion] in CIFAR100_COARSE[groups[coarse_of[lion]]]


class CountingEncoder:
    calls = 0

    def __init__(self, width: int = 3) -> None:
        self.width = width

    def encode(self, names):
        CountingEncoder.calls += 1
        return torch.arange(len(names) * self.width, dtype=torch.float32).view(len(names), self.width)


def test_class_name_embeddings_are_computed_once_and_cached_on_disk(tmp_path):
    from runner.methods.fedsm import strategy as fedsm_strategy

    encoder = functools.partial(CountingEncoder, width=3)
    first = fedsm_strategy.class_name_embeddings(encoder, ["a", "b"], str(tmp_path))
    again = fedsm_strategy.class_name_embeddings(encoder, ["a", "b"], str(tmp_path))
    assert CountingEncoder.calls == 1 and torch.equal(first, again)
    fedsm_strategy._EMBEDDINGS.clear()  # a new process: the disk cache answers
    assert torch.equal(fedsm_strategy.class_name_embeddings(encoder, ["a", "b"], str(tmp_path)), first)
    assert CountingEncoder.calls == 1
    other = fedsm_strategy.class_name_embeddings(
        functools.partial(CountingEncoder, width=2), ["a", "b"], None
    )
    assert CountingEncoder.calls == 2 and other.shape == (2, 2)  # another encoder: another entry


def test_selection_temperature_sharpens_the_same_ordering():
    card = make_module()
    sharp = make_module(selection_temperature=0.05)
    s = card.strategy.selection_relevance(card)
    t = sharp.strategy.selection_relevance(sharp)
    assert torch.equal(s.argsort(1), t.argsort(1))  # same ranking of source classes
    assert torch.allclose(t.amax(1), torch.ones(4))
    assert t[0, 2] < 1e-6 < s[0, 0]  # exp((S - max) / T): cat practically never draws car features
    with pytest.raises(Exception, match="selection_temperature"):
        make_module(selection_temperature=0.0)
