"""MGHFT's text-guided fusion attention block (card: "Fusion block 768-d, 12 heads, MLP 3072").

Queries are the (position-embedded) visual tokens ``X``; keys/values of the text tokens ``T``
(4 view tokens + 4 local-text tokens) and of the visual tokens share the projections:

    Q = X W_q,  K_v = X W_k,  V_v = X W_v,  K_t = T W_k,  V_t = T W_v      (per head, d = D / heads)
    v_t = softmax(Q K_tᵀ / √d) V_t            # each visual token gathers text
    ctx = softmax(v_t K_vᵀ / √d) V_v          # the text-informed query re-attends the visual tokens
    X' = X + W_o ctx;   X'' = X' + FFN(LN(X'))

with LayerNorm before the attention on the visual tokens only (the text tokens enter un-normalised,
as in the release). The caller reads token 0.

``num_queries`` (default all): the block's output for the first ``num_queries`` tokens only. Tokens
interact only through the keys and values, so token 0's output is exactly the same whether or not the
other tokens are computed as queries; MGHFT classifies token 0 and asks for it alone, which skips
the queries, attention and FFN of the other ~1000 tokens (exact; about 5x less fusion work).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class TextGuidedFusionBlock(nn.Module):
    """Visual→text→visual double attention + FFN (see module docstring)."""

    def __init__(
        self,
        dim: int = 768,
        num_heads: int = 12,
        mlp_dim: int = 3072,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"fusion dim {dim} must be divisible by its heads {num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.attention_norm = nn.LayerNorm(dim, eps=1e-6)
        self.ffn_norm = nn.LayerNorm(dim, eps=1e-6)
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.attn_dropout = nn.Dropout(attention_dropout)
        self.proj_dropout = nn.Dropout(attention_dropout)
        self.ffn = nn.Sequential(
            nn.Linear(dim, mlp_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(mlp_dim, dim),
            nn.Dropout(dropout),
        )
        for layer in (self.ffn[0], self.ffn[3]):
            nn.init.xavier_uniform_(layer.weight)
            nn.init.normal_(layer.bias, std=1e-6)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        return x.reshape(B, N, self.num_heads, self.head_dim).transpose(1, 2)

    def double_attention(
        self, visual: torch.Tensor, text: torch.Tensor, num_queries: int | None = None
    ) -> torch.Tensor:
        """``ctx`` of the module docstring, ``[B, N_q, D]`` before the output projection (queries: the
        first ``num_queries`` visual tokens, all by default)."""
        q = self._heads(self.query(visual if num_queries is None else visual[:, :num_queries]))
        k_v, v_v = self._heads(self.key(visual)), self._heads(self.value(visual))
        k_t, v_t = self._heads(self.key(text)), self._heads(self.value(text))
        scale = 1.0 / math.sqrt(self.head_dim)
        text_ctx = self.attn_dropout(torch.softmax(q @ k_t.transpose(-2, -1) * scale, dim=-1)) @ v_t
        ctx = self.attn_dropout(torch.softmax(text_ctx @ k_v.transpose(-2, -1) * scale, dim=-1)) @ v_v
        B, _, N, _ = ctx.shape
        return ctx.transpose(1, 2).reshape(B, N, -1)

    def forward(
        self, visual: torch.Tensor, text: torch.Tensor, num_queries: int | None = None
    ) -> torch.Tensor:
        """``[B, N_q, D]``: the block's output for the first ``num_queries`` tokens (all by default)."""
        ctx = self.double_attention(self.attention_norm(visual), text, num_queries)
        residual = visual if num_queries is None else visual[:, :num_queries]
        x = residual + self.proj_dropout(self.out(ctx))
        return x + self.ffn(self.ffn_norm(x))
