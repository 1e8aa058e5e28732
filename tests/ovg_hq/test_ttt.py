"""TTT-Linear: the dual form equals a naive per-token mini-batch gradient-descent loop."""

from __future__ import annotations

import torch

from runner.models.ttt import TTTLinear, layer_norm_l2_grad, ttt_linear_dual, ttt_linear_primal


def _random_case(seed: int, b=2, h=3, m=6, d=5):
    g = torch.Generator().manual_seed(seed)
    rand = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    q, k, v = rand(b, h, m, d), rand(b, h, m, d), rand(b, h, m, d)
    eta = torch.rand(b, h, m, m, generator=g, dtype=torch.float64) * 0.2
    state = (rand(b, h, d, d) * 0.3, rand(b, h, 1, d) * 0.3)
    gamma = torch.rand(h, 1, d, generator=g, dtype=torch.float64) + 0.5
    beta = rand(h, 1, d) * 0.1
    return q, k, v, eta, state, gamma, beta


def test_dual_form_equals_naive_gradient_loop():
    for seed in range(3):
        q, k, v, eta, state, gamma, beta = _random_case(seed)
        out_dual, (w_dual, b_dual) = ttt_linear_dual(q, k, v, eta, state, gamma, beta)
        out_naive, (w_naive, b_naive) = ttt_linear_primal(q, k, v, eta, state, gamma, beta)
        torch.testing.assert_close(out_dual, out_naive, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(w_dual, w_naive, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(b_dual, b_naive, rtol=1e-10, atol=1e-10)


def test_only_lower_triangle_of_eta_matters():
    q, k, v, eta, state, gamma, beta = _random_case(7)
    upper = torch.triu(torch.rand_like(eta), diagonal=1)
    a, _ = ttt_linear_dual(q, k, v, eta, state, gamma, beta)
    b, _ = ttt_linear_dual(q, k, v, eta + upper, state, gamma, beta)
    torch.testing.assert_close(a, b)


def test_layer_norm_gradient_matches_autograd():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4, 7, dtype=torch.float64, generator=g, requires_grad=True)
    target = torch.randn(4, 7, dtype=torch.float64, generator=g)
    gamma, beta = torch.rand(7, dtype=torch.float64) + 0.5, torch.randn(7, dtype=torch.float64)
    y = torch.nn.functional.layer_norm(z, (7,), gamma, beta, eps=1e-6)
    (0.5 * (y - target).pow(2).sum()).backward()
    torch.testing.assert_close(layer_norm_l2_grad(z.detach(), target, gamma, beta, 1e-6), z.grad)


def test_layer_carries_weights_across_windows_like_the_naive_loop():
    torch.manual_seed(0)
    layer = TTTLinear(width=12, num_heads=3, mini_batch_size=4).double()
    with torch.no_grad():
        layer.token_offset.copy_(torch.tensor([0.1, -0.2, 0.05, 0.3]))
    x = torch.randn(2, 3, 4, 12, dtype=torch.float64)
    y, (w, b) = layer(x)
    # the same three windows through the naive per-token loop, carrying (W, b) by hand
    state = layer.initial_state(2)
    heads = lambda t: t.view(2, 4, 3, 4).transpose(1, 2)  # noqa: E731
    outs = []
    eta = layer.step_sizes(x)
    for i in range(3):
        xi = x[:, i]
        o, state = ttt_linear_primal(
            heads(layer.q_proj(xi)),
            heads(layer.k_proj(xi)),
            heads(layer.v_proj(xi)),
            eta[:, i],
            state,
            layer.ln_weight,
            layer.ln_bias,
            layer.eps,
        )
        outs.append(o.transpose(1, 2).reshape(2, 4, 12))
    expected = layer.o_proj(layer.post_norm(torch.stack(outs, 1)))
    torch.testing.assert_close(y, expected)
    torch.testing.assert_close(w, state[0])
    torch.testing.assert_close(b, state[1])


def test_memory_is_carried_and_differentiable():
    torch.manual_seed(1)
    carry = TTTLinear(8, 2, 4, carry=True)
    reset = TTTLinear(8, 2, 4, carry=False)
    reset.load_state_dict(carry.state_dict())
    x = torch.randn(1, 3, 4, 8)
    y_carry, _ = carry(x)
    y_reset, _ = reset(x)
    torch.testing.assert_close(y_carry[:, 0], y_reset[:, 0])  # same first window
    assert not torch.allclose(y_carry[:, 2], y_reset[:, 2])  # later windows see the carried memory
    # the last window's output depends on the first window's input through the carried weights
    x.requires_grad_(True)
    y, _ = carry(x)
    y[:, 2].sum().backward()
    assert x.grad[:, 0].abs().sum() > 0
    x.grad = None
    y, _ = reset(x)
    y[:, 2].sum().backward()
    assert x.grad[:, 0].abs().sum() == 0
