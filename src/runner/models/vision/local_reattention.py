"""Local Re-Attention (LORA / MGHFT card, "Read from the official code"): per stage, pick the patch
tokens the stage's CLS token attends to most, by attention rollout, top-k per head.

Rollout with spatial-reduction attention. A block's attention ``A`` is ``[N_q, N_k]``: queries are
the ``N_q = 1 + H*W`` tokens (CLS first), keys the CLS token plus the ``H'*W'`` reduced tokens
(``H' = H / sr``). To chain blocks, each map is spread back to the full token set,
``M = A U``, where ``U`` sends reduced key ``j`` to the ``sr x sr`` patches it pools, each with
weight ``1/sr^2`` (the CLS key maps to the CLS token), so ``M`` is ``[N_q, N_q]`` and row-stochastic.
The rollout of a stage with blocks ``1..L`` is ``M_L ... M_1``; only its CLS row is used, so it is
computed as a vector–matrix chain ``e_0^T M_L M_{L-1} ... M_1`` in ``O(L N_q N_k)`` time and
``O(N_q)`` memory instead of forming ``N_q x N_q`` matrices. With ``sr = 1`` this is exactly the
release's product ``A_L ... A_1`` (row 0). Deviation: for ``sr > 1`` the release chains the
non-square maps with alternating transposes (``A_2^T (A_1 A_0^T)`` ...), which is not a product of
token-to-token maps; the selected counts are the same.

Top-k: per head, over the ``H*W`` patches (CLS column dropped),
``k = alpha * (N_q // (N_k - 1))`` — with alpha = 8 at 448 px input: 512 / 128 / 32 / 8 per head,
i.e. 512 / 256 / 160 / 64 tokens per stage over heads 1/2/5/8 (992 local tokens). ``k`` is clipped
to ``H*W`` for inputs so small that the formula asks for more patches than exist.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


def spread_to_patches(row: torch.Tensor, H: int, W: int, sr: int) -> torch.Tensor:
    """``row @ U``: ``[..., 1 + H'W']`` weights over (CLS, reduced keys) -> ``[..., 1 + H*W]``.

    Each reduced key's weight is shared equally by the ``sr x sr`` patches it pools (patches in a
    remainder row/column that the strided reduction drops get zero).
    """
    if sr == 1:
        return row
    lead = row.shape[:-1]
    Hr, Wr = H // sr, W // sr
    grid = row[..., 1:].reshape(-1, 1, Hr, Wr)
    full = F.interpolate(grid, scale_factor=sr, mode="nearest") / (sr * sr)
    full = F.pad(full, (0, W - Wr * sr, 0, H - Hr * sr))
    return torch.cat([row[..., :1], full.reshape(*lead, H * W)], dim=-1)


def rollout_cls_row(attentions: Sequence[torch.Tensor], H: int, W: int, sr: int) -> torch.Tensor:
    """The CLS row of the stage's attention rollout, ``[B, heads, 1 + H*W]`` (see module docstring).

    ``attentions``: the stage's blocks' maps in order, each ``[B, heads, 1 + H*W, 1 + H'W']``.
    """
    row = spread_to_patches(attentions[-1][:, :, 0, :], H, W, sr)  # e_0^T M_L
    for attn in reversed(attentions[:-1]):
        row = spread_to_patches(torch.einsum("bhq,bhqk->bhk", row, attn), H, W, sr)
    return row


def top_k_per_head(num_queries: int, num_keys: int, alpha: int, num_patches: int) -> int:
    """``k = alpha * (N_q // (N_k - 1))``, clipped to the number of patches."""
    return max(1, min(int(alpha) * (num_queries // max(num_keys - 1, 1)), num_patches))


@torch.no_grad()
def local_reattention_indices(
    attentions: Sequence[torch.Tensor], H: int, W: int, sr: int, alpha: int
) -> torch.Tensor:
    """Token indices (into the stage's ``[cls, patches]`` tokens) of the selected patches:
    ``[B, heads * k]``, the top-k of each head's rollout CLS row, concatenated across heads."""
    row = rollout_cls_row([a.detach().float() for a in attentions], H, W, sr)
    num_queries, num_keys = attentions[0].shape[-2:]
    k = top_k_per_head(num_queries, num_keys, alpha, H * W)
    top = row[:, :, 1:].topk(k, dim=-1).indices + 1  # +1: skip the CLS token
    return top.flatten(1)


def gather_tokens(tokens: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """``tokens[b, indices[b]]``: ``[B, N, C]`` x ``[B, K]`` -> ``[B, K, C]``."""
    return torch.gather(tokens, 1, indices.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
