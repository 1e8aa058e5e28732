"""TTT-Linear: a linear layer whose weights are trained in the forward pass (Sun et al., "Learning to
(Learn at Test Time)", 2024), as the OVG-HQ Parametric Memory Block uses it (card ``ovg_hq.md``,
"Read from the official code": TTT-Linear).

The hidden state of each head is a linear model ``f(k) = LN(k·W + b)`` (``W`` ``d×d``, ``b`` ``1×d``,
``LN`` a per-head LayerNorm with learned scale/shift). Tokens arrive in mini-batches (an OVG-HQ
window); inside a mini-batch of ``m`` tokens, with all gradients taken at the state ``(W₀, b₀)`` the
mini-batch started with,

    g_j   = ∂/∂Z ½‖LN(Z) − (v_j − k_j)‖²  at  Z = k_j·W₀ + b₀              (inner reconstruction loss)
    η_ij  = (1/i + ε_i)₊ · base_lr · σ(θ_h·x_j + β_h) / d                 (i, j = 1..m, 1-based)
    W_i   = W₀ − Σ_{j≤i} η_ij k_jᵀ g_j,   b_i = b₀ − Σ_{j≤i} η_ij g_j        (token i sees tokens ≤ i)
    out_i = q_i + LN(q_i·W_i + b_i)

and the state carried to the next mini-batch is ``(W_m, b_m)``. :func:`ttt_linear_dual` computes all
``out_i`` of a mini-batch at once (the "dual form": no ``W_i`` is materialised, only
``(η ∘ tril(Q Kᵀ)) G``), which :func:`ttt_linear_primal` checks token by token with autograd.
The state is carried without ``detach`` (gradients flow through the updates, as in the code).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TTTLinear", "TTTState", "layer_norm_l2_grad", "ttt_linear_dual", "ttt_linear_primal"]

TTTState = tuple[torch.Tensor, torch.Tensor]  # W [B, H, d, d], b [B, H, 1, d]


def layer_norm_l2_grad(
    z: torch.Tensor, target: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float
) -> torch.Tensor:
    """``∂/∂z ½‖γ·norm(z) + β − target‖²`` over the last dim (LayerNorm backward in closed form)."""
    d = z.shape[-1]
    mu = z.mean(-1, keepdim=True)
    var = z.var(-1, keepdim=True, unbiased=False)
    std = torch.sqrt(var + eps)
    x_hat = (z - mu) / std
    grad_out = gamma * x_hat + beta - target
    grad_x_hat = grad_out * gamma
    return (
        d * grad_x_hat - grad_x_hat.sum(-1, keepdim=True) - x_hat * (grad_x_hat * x_hat).sum(-1, keepdim=True)
    ) / (d * std)


def _layer_norm(z: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float) -> torch.Tensor:
    mu = z.mean(-1, keepdim=True)
    var = z.var(-1, keepdim=True, unbiased=False)
    return gamma * (z - mu) / torch.sqrt(var + eps) + beta


def ttt_linear_dual(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    eta: torch.Tensor,
    state: TTTState,
    gamma: torch.Tensor,
    beta: torch.Tensor,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, TTTState]:
    """One mini-batch of TTT-Linear in dual form.

    Args:
        q, k, v: ``[B, H, m, d]``.
        eta: ``[B, H, m, m]`` step sizes ``η_ij`` (row i = output token, column j = gradient token);
            entries above the diagonal are ignored.
        state: ``(W [B, H, d, d], b [B, H, 1, d])`` at the start of the mini-batch.
        gamma, beta: ``[H, 1, d]`` the inner LayerNorm's scale and shift.

    Returns ``(out [B, H, m, d], (W_m, b_m))`` with ``out_i = q_i + LN(q_i W_i + b_i)``.
    """
    w0, b0 = state
    z = k @ w0 + b0
    grad = layer_norm_l2_grad(z, v - k, gamma, beta, eps)  # [B, H, m, d]
    eta = torch.tril(eta)
    attn = torch.tril(q @ k.transpose(-1, -2))  # [B, H, m, m]
    b_bar = b0 - eta @ grad  # b_i for every i
    z_bar = q @ w0 - (eta * attn) @ grad + b_bar
    out = q + _layer_norm(z_bar, gamma, beta, eps)
    last = eta[..., -1, :].unsqueeze(-1)  # [B, H, m, 1]: η_mj
    w_new = w0 - (last * k).transpose(-1, -2) @ grad
    b_new = b_bar[..., -1:, :]
    return out, (w_new, b_new)


def ttt_linear_primal(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    eta: torch.Tensor,
    state: TTTState,
    gamma: torch.Tensor,
    beta: torch.Tensor,
    eps: float = 1e-6,
) -> tuple[torch.Tensor, TTTState]:
    """The same mini-batch as :func:`ttt_linear_dual`, computed naively: each token's loss gradient
    by autograd at ``(W₀, b₀)``, then for every output token ``i`` its own ``W_i = W₀ − Σ_{j≤i} η_ij ∇W ℓ_j``.
    Slow (a Python loop over tokens); a reference for tests."""
    w0, b0 = state
    m = q.shape[-2]
    grads_w, grads_b = [], []
    for j in range(m):
        w = w0.detach().clone().requires_grad_(True)
        b = b0.detach().clone().requires_grad_(True)
        z = k[..., j : j + 1, :].detach() @ w + b
        target = (v[..., j : j + 1, :] - k[..., j : j + 1, :]).detach()
        loss = 0.5 * (_layer_norm(z, gamma.detach(), beta.detach(), eps) - target).pow(2).sum()
        gw, gb = torch.autograd.grad(loss, (w, b))
        grads_w.append(gw)
        grads_b.append(gb)
    outs = []
    w_i, b_i = w0, b0
    for i in range(m):
        w_i = w0 - sum(eta[..., i, j, None, None] * grads_w[j] for j in range(i + 1))
        b_i = b0 - sum(eta[..., i, j, None, None] * grads_b[j] for j in range(i + 1))
        z = q[..., i : i + 1, :] @ w_i + b_i
        outs.append(q[..., i : i + 1, :] + _layer_norm(z, gamma, beta, eps))
    return torch.cat(outs, dim=-2), (w_i, b_i)


class TTTLinear(nn.Module):
    """Multi-head TTT-Linear over a sequence of mini-batches (card: "per head W 32×32 + b").

    ``forward(x [B, n, m, D], state)`` processes the ``n`` mini-batches of ``m`` tokens in order,
    carrying ``(W, b)`` from one to the next (``carry=False``: every mini-batch starts from the learned
    initial state, i.e. no memory across mini-batches; then all of them run as one batch).

    Args:
        width: model width ``D`` (= ``num_heads · head_dim``).
        num_heads: heads ``H``; each has its own ``W`` (``head_dim × head_dim``).
        mini_batch_size: ``m``, the number of learnable token offsets ``ε_i`` (init 0).
        base_lr: the inner learning rate's scale (TTT's ``ttt_base_lr``).
        carry: keep the state across mini-batches (the memory) or reset it at each.
    """

    def __init__(
        self,
        width: int,
        num_heads: int,
        mini_batch_size: int,
        base_lr: float = 1.0,
        carry: bool = True,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if width % num_heads:
            raise ValueError(f"TTTLinear: width {width} is not a multiple of num_heads {num_heads}")
        self.width, self.num_heads, self.head_dim = int(width), int(num_heads), int(width) // int(num_heads)
        self.mini_batch_size = int(mini_batch_size)
        self.base_lr, self.carry, self.eps = float(base_lr), bool(carry), float(eps)
        self.q_proj = nn.Linear(width, width, bias=False)
        self.k_proj = nn.Linear(width, width, bias=False)
        self.v_proj = nn.Linear(width, width, bias=False)
        self.o_proj = nn.Linear(width, width, bias=False)
        self.lr_gate = nn.Linear(width, num_heads)  # θ_h·x_j + β_h
        self.token_offset = nn.Parameter(torch.zeros(self.mini_batch_size))  # ε_i
        self.w0 = nn.Parameter(torch.randn(num_heads, self.head_dim, self.head_dim) * 0.02)
        self.b0 = nn.Parameter(torch.zeros(num_heads, 1, self.head_dim))
        self.ln_weight = nn.Parameter(torch.ones(num_heads, 1, self.head_dim))
        self.ln_bias = nn.Parameter(torch.zeros(num_heads, 1, self.head_dim))
        self.post_norm = nn.LayerNorm(width, eps=eps)

    def initial_state(self, batch_size: int) -> TTTState:
        """The learned initial ``(W, b)`` broadcast over the batch (kept in the autograd graph)."""
        return (
            self.w0.unsqueeze(0).expand(batch_size, -1, -1, -1),
            self.b0.unsqueeze(0).expand(batch_size, -1, -1, -1),
        )

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        # [B, n, m, D] -> [B, n, H, m, d]
        b, n, m, _ = t.shape
        return t.view(b, n, m, self.num_heads, self.head_dim).transpose(2, 3)

    def step_sizes(self, x: torch.Tensor) -> torch.Tensor:
        """``η [B, n, H, m, m]`` for inputs ``x [B, n, m, D]``."""
        m = x.shape[2]
        position = 1.0 / torch.arange(1, m + 1, device=x.device, dtype=x.dtype)
        token_scale = F.relu(position + self.token_offset[:m].to(x.dtype))  # (1/i + ε_i)₊
        gate = torch.sigmoid(self.lr_gate(x)).permute(0, 1, 3, 2)  # [B, n, H, m]: σ(θ_h·x_j + β_h)
        lr = self.base_lr * gate / self.head_dim
        return token_scale.view(1, 1, 1, m, 1) * lr.unsqueeze(-2)

    def forward(self, x: torch.Tensor, state: TTTState | None = None) -> tuple[torch.Tensor, TTTState]:
        """``x [B, n, m, D]`` → ``(y [B, n, m, D], state after the last mini-batch)``."""
        b, n, m, d_model = x.shape
        q, k, v = (self._heads(p(x)) for p in (self.q_proj, self.k_proj, self.v_proj))
        eta = self.step_sizes(x)
        gamma, beta = self.ln_weight, self.ln_bias
        if not self.carry:
            flat = lambda t: t.reshape(b * n, *t.shape[2:])  # noqa: E731
            out, _ = ttt_linear_dual(
                flat(q), flat(k), flat(v), flat(eta), self.initial_state(b * n), gamma, beta, self.eps
            )
            out = out.view(b, n, self.num_heads, m, self.head_dim)
            new_state = state if state is not None else self.initial_state(b)
        else:
            state = state if state is not None else self.initial_state(b)
            outs = []
            for i in range(n):
                o, state = ttt_linear_dual(q[:, i], k[:, i], v[:, i], eta[:, i], state, gamma, beta, self.eps)
                outs.append(o)
            out = torch.stack(outs, dim=1)
            new_state = state
        out = out.transpose(2, 3).reshape(b, n, m, d_model)
        return self.o_proj(self.post_norm(out)), new_state

    def extra_repr(self) -> str:
        return (
            f"width={self.width}, heads={self.num_heads}, mini_batch={self.mini_batch_size}, "
            f"carry={self.carry}, base_lr={self.base_lr}"
        )
