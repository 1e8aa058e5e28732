"""Byrd-NAFL's server step and momentum placement; strategy config errors."""

from __future__ import annotations

import pytest
import torch

from runner.errors import UserError
from runner.methods.byrd_nafl import ByrdNAFL, LookaheadNesterov


def quadratic_run(make_optimizer, steps=15):
    target = torch.tensor([3.0, -2.0, 0.5], dtype=torch.float64)
    p = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    opt = make_optimizer([p])
    for _ in range(steps):
        p.grad = 2 * (p.detach() - target)  # gradient at the stored (look-ahead) point
        opt.step()
    return p.detach()


def test_lookahead_nesterov_equals_torch_nesterov():
    ours = quadratic_run(lambda ps: LookaheadNesterov(ps, lr=0.05, beta=0.9))
    torch_sgd = quadratic_run(lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True))
    assert torch.allclose(ours, torch_sgd, atol=1e-12)


def test_lookahead_nesterov_follows_card_equations():
    # x1 = y0 - lr g(y0); y1 = x1 + beta (x1 - x0), with x0 = y0
    p = torch.tensor([1.0], requires_grad=True)
    opt = LookaheadNesterov([p], lr=0.1, beta=0.5)
    p.grad = torch.tensor([2.0])
    opt.step()
    x1 = 1.0 - 0.1 * 2.0
    assert p.item() == pytest.approx(x1 + 0.5 * (x1 - 1.0))


def strategy(**kw):
    base = dict(aggregator="median", attack="sign_flip", byzantine_fraction=0.2, local_lr=0.1)
    return ByrdNAFL(**{**base, **kw})


def test_server_optimizers_by_acceleration():
    params = [torch.nn.Parameter(torch.zeros(2))]
    assert isinstance(strategy(acceleration="nesterov").configure_server_optimizer(params), LookaheadNesterov)
    hb = strategy(acceleration="heavy_ball").configure_server_optimizer(params)
    assert hb.defaults["momentum"] == 0.9
    assert strategy(acceleration="none").configure_server_optimizer(params).defaults["momentum"] == 0
    client_side = strategy(acceleration="nesterov", momentum_at="clients")
    assert client_side.configure_server_optimizer(params).defaults["momentum"] == 0


def test_client_momentum_is_kept_per_client():
    s = strategy(acceleration="heavy_ball", momentum_at="clients", beta=0.5)
    s.setup(4, torch.zeros(3), torch.zeros(3, dtype=torch.bool), seed=0)
    plan = s.configure_train(0, torch.zeros(3))
    rows = torch.tensor([0, 2])
    g = torch.ones(2, 3)
    assert torch.equal(s.client_messages(plan, rows, g), g)
    assert torch.equal(s.client_messages(plan, rows, g), 1.5 * g)
    assert torch.equal(s.state.momentum[1], torch.zeros(3))


def dampened_reference(acceleration, beta, lr, steps=15):
    """ByzFL's dampened momentum written out: m ← β m + (1 − β) g (m₀ = 0); heavy ball x ← x − η m;
    Nesterov (look-ahead form) evaluates g at y = x + β (x − x_prev)."""
    target = torch.tensor([3.0, -2.0, 0.5], dtype=torch.float64)
    x = torch.zeros(3, dtype=torch.float64)
    m = torch.zeros(3, dtype=torch.float64)
    v = torch.zeros(3, dtype=torch.float64)  # Nesterov velocity x_k - x_{k-1}
    for _ in range(steps):
        if acceleration == "heavy_ball":
            m = beta * m + (1 - beta) * 2 * (x - target)
            x = x - lr * m
        else:
            y = x + beta * v
            v = beta * v - lr * (1 - beta) * 2 * (y - target)
            x = x + v
    return x if acceleration == "heavy_ball" else x + beta * v  # the parameters hold y for Nesterov


@pytest.mark.parametrize("acceleration", ["heavy_ball", "nesterov"])
def test_dampened_server_momentum_follows_byzfl_recursion(acceleration):
    s = strategy(acceleration=acceleration, beta=0.9, dampening=True, server_lr=0.05)
    assert s.momentum_scale == pytest.approx(0.1)
    ours = quadratic_run(s.configure_server_optimizer)
    torch.testing.assert_close(ours, dampened_reference(acceleration, 0.9, 0.05), atol=1e-12, rtol=0)
    undampened = quadratic_run(
        strategy(acceleration=acceleration, beta=0.9, server_lr=0.05).configure_server_optimizer
    )
    assert not torch.allclose(ours, undampened)
    plain = strategy(acceleration="none", dampening=True, server_lr=0.05)
    assert plain.momentum_scale == 1.0  # no momentum: nothing to dampen


def test_dampened_client_momentum():
    s = strategy(acceleration="heavy_ball", momentum_at="clients", beta=0.5, dampening=True)
    s.setup(4, torch.zeros(3), torch.zeros(3, dtype=torch.bool), seed=0)
    plan = s.configure_train(0, torch.zeros(3))
    rows = torch.tensor([0, 2])
    g = torch.ones(2, 3)
    assert torch.equal(s.client_messages(plan, rows, g), 0.5 * g)  # m1 = 0.5·0 + 0.5·g
    assert torch.equal(s.client_messages(plan, rows, g), 0.75 * g)  # m2 = 0.5·m1 + 0.5·g


@pytest.mark.parametrize(
    ("kw", "fragment"),
    [
        ({"aggregator": "krumm"}, "fl_strategy.aggregator='krumm'"),
        ({"attack": "nope"}, "fl_strategy.attack='nope'"),
        ({"acceleration": "adam"}, "fl_strategy.acceleration='adam'"),
        ({"momentum_at": "moon"}, "fl_strategy.momentum_at='moon'"),
    ],
)
def test_invalid_names_list_valid_ones(kw, fragment):
    with pytest.raises(UserError, match="one of") as err:
        strategy(**kw)
    assert fragment in str(err.value)


def test_byzantine_fraction_beyond_bound_names_it():
    s = strategy(aggregator="krum", byzantine_fraction=0.45)
    with pytest.raises(UserError, match=r"n > 2f \+ 2"):
        s.setup(10, torch.zeros(3), torch.zeros(3, dtype=torch.bool), seed=0)
