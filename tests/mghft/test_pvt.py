"""PVT v1 shapes, checkpoint loading and Local Re-Attention (rollout, top-k counts)."""

from __future__ import annotations

import pytest
import torch

from runner.errors import UserError
from runner.models.vision import (
    PyramidVisionTransformer,
    local_reattention_indices,
    rollout_cls_row,
    spread_to_patches,
    top_k_per_head,
)

TINY = {"embed_dims": (8, 16, 40, 64), "depths": (1, 1, 2, 1)}  # the v1-small heads 1/2/5/8, SR 8/4/2/1


def test_pvt_small_has_the_card_sizes():
    net = PyramidVisionTransformer()
    assert net.embed_dims == [64, 128, 320, 512] and net.depths == [3, 4, 6, 3]
    assert net.num_heads == [1, 2, 5, 8] and net.sr_ratios == [8, 4, 2, 1]
    n_params = sum(p.numel() for p in net.parameters())
    assert 23.5e6 < n_params < 24.5e6  # PVT v1-small: 24.5M with its 1000-class head (0.5M)


def test_stage_shapes_and_cls_tokens():
    net = PyramidVisionTransformer(img_size=64, **TINY).add_stage_cls_tokens()
    outs = net.forward_stages(torch.randn(2, 3, 64, 64), need_weights=True)
    grids = [(o.H, o.W) for o in outs]
    assert grids == [(16, 16), (8, 8), (4, 4), (2, 2)]
    for o, dim, heads, sr in zip(outs, TINY["embed_dims"], (1, 2, 5, 8), (8, 4, 2, 1), strict=True):
        assert o.has_cls and o.tokens.shape == (2, 1 + o.H * o.W, dim)
        n_keys = 1 + (o.H // sr) * (o.W // sr)
        assert all(a.shape == (2, heads, 1 + o.H * o.W, n_keys) for a in o.attentions)
        torch.testing.assert_close(o.attentions[0].sum(-1), torch.ones(2, heads, 1 + o.H * o.W))
    assert net.forward_features(torch.randn(2, 3, 64, 64)).shape == (2, 64)
    plain = PyramidVisionTransformer(img_size=64, **TINY)
    assert [o.has_cls for o in plain.forward_stages(torch.randn(1, 3, 64, 64))] == [False, False, False, True]


def test_fused_and_explicit_attention_agree():
    net = PyramidVisionTransformer(img_size=64, **TINY).add_stage_cls_tokens().eval()
    x = torch.randn(2, 3, 64, 64)
    fused = net.forward_stages(x, need_weights=False)
    explicit = net.forward_stages(x, need_weights=True)
    for a, b in zip(fused, explicit, strict=True):
        torch.testing.assert_close(a.tokens, b.tokens, atol=1e-5, rtol=1e-4)


def test_token_counts_at_448_are_512_256_160_64():
    """The card's counts: k = 8 (N_q // (N_k - 1)) per head, concatenated over heads 1/2/5/8."""
    net = PyramidVisionTransformer(embed_dims=(8, 16, 40, 64), depths=(1, 1, 1, 1)).add_stage_cls_tokens()
    with torch.no_grad():
        outs = net.forward_stages(torch.randn(1, 3, 448, 448), need_weights=True)
    counts = [
        local_reattention_indices(o.attentions, o.H, o.W, sr, alpha=8).shape[1]
        for o, sr in zip(outs, net.sr_ratios, strict=True)
    ]
    assert counts == [512, 256, 160, 64]
    assert sum(counts) + 4 == 996  # + 4 global tokens: the fusion block's position-embedding length


def test_top_k_formula():
    assert top_k_per_head(1 + 112 * 112, 1 + 14 * 14, 8, 112 * 112) == 512
    assert top_k_per_head(1 + 14 * 14, 1 + 14 * 14, 8, 14 * 14) == 8
    assert top_k_per_head(1 + 4 * 4, 1 + 2 * 2, 8, 16) == 16  # clipped to the patches there are


def _spread_matrix(H: int, W: int, sr: int) -> torch.Tensor:
    """U as an explicit [1 + H'W', 1 + HW] matrix."""
    Hr, Wr = H // sr, W // sr
    U = torch.zeros(1 + Hr * Wr, 1 + H * W, dtype=torch.float64)
    U[0, 0] = 1
    for y in range(Hr * sr):
        for x in range(Wr * sr):
            U[1 + (y // sr) * Wr + x // sr, 1 + y * W + x] = 1 / sr**2
    return U


@pytest.mark.parametrize(
    ("H", "W", "sr", "blocks"), [(8, 8, 4, 3), (6, 10, 2, 2), (7, 9, 2, 3), (4, 4, 1, 3)]
)
def test_rollout_equals_the_explicit_matrix_product(H, W, sr, blocks):
    g = torch.Generator().manual_seed(H * 100 + W)
    n_q, n_k = 1 + H * W, 1 + (H // sr) * (W // sr)
    maps = [torch.rand(2, 3, n_q, n_k, generator=g, dtype=torch.float64).softmax(-1) for _ in range(blocks)]
    U = _spread_matrix(H, W, sr)
    product = maps[-1] @ U
    for attn in reversed(maps[:-1]):
        product = product @ (attn @ U)
    torch.testing.assert_close(rollout_cls_row(maps, H, W, sr), product[:, :, 0, :])
    row = torch.rand(2, 3, n_k, generator=g, dtype=torch.float64)
    torch.testing.assert_close(spread_to_patches(row, H, W, sr), row @ U)


def test_local_reattention_picks_the_most_attended_patches():
    H = W = 4
    attn = torch.full((1, 2, 17, 17), 1e-3)
    attn[0, 0, :, 5] = 1.0  # head 0: everyone attends patch 4 (token 5)
    attn[0, 1, :, 12] = 1.0  # head 1: patch 11 (token 12)
    attn = attn / attn.sum(-1, keepdim=True)
    idx = local_reattention_indices([attn, attn], H, W, sr=1, alpha=1)
    assert idx.tolist() == [[5, 12]]


def test_checkpoint_roundtrip_with_position_embedding_resize(tmp_path):
    src = PyramidVisionTransformer(img_size=32, **TINY)
    state = {f"module.{k}": v for k, v in src.state_dict().items()}
    state["head.weight"] = torch.randn(1000, 64)  # the ImageNet classifier: ignored
    path = tmp_path / "pvt_tiny.pth"
    torch.save({"model": state}, path)
    dst = PyramidVisionTransformer(img_size=64, checkpoint=str(path), **TINY)
    torch.testing.assert_close(dst.block3[1].attn.q.weight, src.block3[1].attn.q.weight)
    assert dst.pos_embed1.shape == (1, 16 * 16, 8) and dst.pos_embed4.shape == (1, 1 + 2 * 2, 64)
    torch.testing.assert_close(dst.pos_embed4[:, 0], src.pos_embed4[:, 0])  # the CLS slot is kept
    with pytest.raises(UserError, match="not found"):
        PyramidVisionTransformer(checkpoint=str(tmp_path / "missing.pth"), **TINY)


@pytest.mark.slow
def test_pvt_small_forward_at_448():
    net = PyramidVisionTransformer().add_stage_cls_tokens().eval()
    with torch.no_grad():
        outs = net.forward_stages(torch.randn(1, 3, 448, 448), need_weights=True)
    assert [o.tokens.shape[1] for o in outs] == [1 + 112 * 112, 1 + 56 * 56, 1 + 28 * 28, 1 + 14 * 14]
