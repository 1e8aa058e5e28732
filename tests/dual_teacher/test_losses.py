"""Each distillation loss against a hand computation (scalar math, loops)."""

from __future__ import annotations

import math

import pytest
import torch

from runner.methods.dual_teacher import losses


def _softmax(z: list[float], t: float = 1.0) -> list[float]:
    e = [math.exp(v / t) for v in z]
    return [v / sum(e) for v in e]


def _kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True) if pi > 0)


def test_kd_matches_hand_computation():
    s, t = [0.0, 1.0, -1.0], [math.log(3.0), 0.0, 0.5]
    for temp in (1.0, 4.0):
        expected = temp**2 * _kl(_softmax(t, temp), _softmax(s, temp))
        got = losses.kd_loss(torch.tensor([s]), torch.tensor([t]), temp)
        assert got.item() == pytest.approx(expected, rel=1e-5)
    # batch mean
    two = losses.kd_loss(torch.tensor([s, s]), torch.tensor([t, s]), 1.0)
    assert two.item() == pytest.approx(_kl(_softmax(t), _softmax(s)) / 2, rel=1e-5)


def test_kd_of_equal_logits_is_zero():
    z = torch.randn(4, 5)
    assert losses.kd_loss(z, z.clone()).item() == pytest.approx(0.0, abs=1e-6)


def test_dkd_matches_hand_computation():
    s, t, label, temp, alpha, beta = [1.0, 0.2, -0.5, 0.3], [2.0, 0.0, 1.0, -1.0], 0, 2.0, 1.0, 8.0
    p_s, p_t = _softmax(s, temp), _softmax(t, temp)
    tckd = _kl([p_t[label], 1 - p_t[label]], [p_s[label], 1 - p_s[label]])
    others = [c for c in range(4) if c != label]
    q_s = _softmax([s[c] for c in others], temp)  # non-target distribution: renormalised over the others
    q_t = _softmax([t[c] for c in others], temp)
    expected = temp**2 * (alpha * tckd + beta * _kl(q_t, q_s))
    got = losses.dkd_loss(torch.tensor([s]), torch.tensor([t]), torch.tensor([label]), alpha, beta, temp)
    assert got.item() == pytest.approx(expected, rel=1e-4)


def _pearson(a: list[float], b: list[float]) -> float:
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b, strict=True))
    return cov / math.sqrt(sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b))


def test_dist_matches_hand_computation():
    s = [[1.0, 0.0, -1.0], [0.5, 0.2, 0.1]]
    t = [[2.0, -1.0, 0.0], [0.0, 1.0, 0.3]]
    temp, beta, gamma = 2.0, 1.0, 2.0
    ys = [_softmax(r, temp) for r in s]
    yt = [_softmax(r, temp) for r in t]
    inter = 1 - sum(_pearson(a, b) for a, b in zip(ys, yt, strict=True)) / 2
    cols = lambda m: [[row[c] for row in m] for c in range(3)]  # noqa: E731
    intra = 1 - sum(_pearson(a, b) for a, b in zip(cols(ys), cols(yt), strict=True)) / 3
    expected = temp**2 * (beta * inter + gamma * intra)
    got = losses.dist_loss(torch.tensor(s), torch.tensor(t), beta, gamma, temp)
    assert got.item() == pytest.approx(expected, rel=1e-4)


def _smooth_l1(a: list[float], b: list[float]) -> float:
    return sum(
        0.5 * (x - y) ** 2 if abs(x - y) < 1 else abs(x - y) - 0.5 for x, y in zip(a, b, strict=True)
    ) / len(a)


def _hand_distances(points):
    n = len(points)
    d = [[math.dist(points[i], points[j]) for j in range(n)] for i in range(n)]
    mean = sum(d[i][j] for i in range(n) for j in range(n) if i != j) / (n * n - n)
    return [d[i][j] / mean for i in range(n) for j in range(n)]


def _hand_angles(points):
    n = len(points)
    out = []
    for i in range(n):
        for j in range(n):
            for k in range(n):
                u = [a - b for a, b in zip(points[j], points[i], strict=True)]
                v = [a - b for a, b in zip(points[k], points[i], strict=True)]
                nu, nv = math.hypot(*u), math.hypot(*v)
                out.append(
                    0.0 if nu == 0 or nv == 0 else sum(a * b for a, b in zip(u, v, strict=True)) / (nu * nv)
                )
    return out


def test_rkd_matches_hand_computation():
    s = [(0.0, 0.0), (1.0, 0.0), (0.0, 1.0)]
    t = [(0.0, 0.0), (1.0, 0.0), (2.0, 0.0)]
    expected_d = _smooth_l1(_hand_distances(s), _hand_distances(t))
    expected_a = _smooth_l1(_hand_angles(s), _hand_angles(t))
    assert expected_d == pytest.approx(0.0716992, rel=1e-5)  # worked out on paper
    got = losses.rkd_loss(torch.tensor(s), torch.tensor(t), dist_factor=1.0, angle_factor=2.0)
    assert got.item() == pytest.approx(expected_d + 2.0 * expected_a, rel=1e-4)


def test_rkd_is_invariant_to_scale_and_rotation_of_the_teacher():
    s = torch.randn(6, 4)
    rot, _ = torch.linalg.qr(torch.randn(4, 4))
    assert losses.rkd_loss(s, 3.0 * s @ rot).item() == pytest.approx(0.0, abs=1e-5)


def test_ofa_matches_hand_computation():
    s, t, label = [0.3, -0.2, 0.5], [1.0, 0.0, -1.0], 2
    p_s, p_t = _softmax(s), _softmax(t)
    for eps in (1.0, 1.5):
        target = [(p_t[c] + (c == label)) ** eps - (c == label) for c in range(3)]
        expected = -sum(target[c] * math.log(p_s[c]) for c in range(3))
        got = losses.ofa_loss(torch.tensor([s]), torch.tensor([t]), torch.tensor([label]), eps)
        assert got.item() == pytest.approx(expected, rel=1e-5)


def test_sdd_mse_and_no_gradient_to_target():
    pred = torch.tensor([[1.0, 2.0], [0.0, -1.0]], requires_grad=True)
    target = torch.tensor([[0.0, 2.0], [1.0, 1.0]], requires_grad=True)
    loss = losses.sdd_mse(pred, target)
    assert loss.item() == pytest.approx((1 + 0 + 1 + 4) / 4)
    loss.backward()
    assert target.grad is None and pred.grad is not None


def test_dkd_term_warms_up_linearly_over_twenty_epochs():
    """mdistiller's DKD: loss × min(epoch / 20, 1), epochs counted from 1 (first epoch: 1/20)."""
    from runner.methods.dual_teacher.terms import DistillContext, DKDTerm

    g = torch.Generator().manual_seed(0)
    z_s, z_t = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    y = torch.randint(0, 5, (6,), generator=g)
    full = losses.dkd_loss(z_s, z_t, y, 1.0, 8.0, 4.0)

    def value(term, epoch):
        ctx = DistillContext(z_s, torch.zeros(6, 2), y, {"cnn": z_t}, {}, epoch=epoch)
        return term(ctx), ctx.stats["dkd_warmup"]

    term = DKDTerm(teachers=("cnn",))
    assert term.warmup_epochs == 20
    for epoch, factor in ((0, 1 / 20), (9, 10 / 20), (19, 1.0), (35, 1.0)):
        loss, logged = value(term, epoch)
        assert torch.allclose(loss, factor * full) and float(logged) == pytest.approx(factor)
    assert torch.allclose(value(DKDTerm(teachers=("cnn",), warmup_epochs=0), 0)[0], full)
    with pytest.raises(ValueError, match="warmup_epochs"):
        DKDTerm(warmup_epochs=-1)


def test_dkd_config_sets_the_warm_up(make_cfg):
    cfg = make_cfg("experiment=dual_teacher_hmdb_twin", "method=dkd")
    assert cfg.method.distill.terms.dkd.warmup_epochs == 20
