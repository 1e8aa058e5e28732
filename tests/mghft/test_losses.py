"""MGHFT's losses against hand computations (plain loops over the definitions on the card)."""

from __future__ import annotations

import math

import pytest
import torch

from runner.methods.mghft.losses import (
    similarity_structure,
    stage_alignment_loss,
    structure_kl,
    symmetric_info_nce,
)


def _unit(rows: list[list[float]]) -> list[list[float]]:
    return [[x / math.sqrt(sum(y * y for y in r)) for x in r] for r in rows]


def _dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def hand_info_nce(v: list[list[float]], t: list[list[float]], tau: float) -> float:
    v, t = _unit(v), _unit(t)
    n = len(v)
    sim = [[_dot(v[i], t[j]) / tau for j in range(n)] for i in range(n)]
    v2t = sum(-sim[i][i] + math.log(sum(math.exp(sim[i][j]) for j in range(n))) for i in range(n)) / n
    t2v = sum(-sim[j][j] + math.log(sum(math.exp(sim[i][j]) for i in range(n))) for j in range(n)) / n
    return 0.5 * (v2t + t2v)


def hand_structure(x: list[list[float]]) -> list[list[float]]:
    """W[i][j] = softmax over k of S[k][i] at k = j, i.e. row i is softmax_j(S[j][i]) (S symmetric)."""
    x = _unit(x)
    n = len(x)
    s = [[0.5 * (1 + _dot(x[i], x[j])) for j in range(n)] for i in range(n)]
    out = []
    for i in range(n):  # column i of softmax_dim0(S), as row i of W
        z = sum(math.exp(s[k][i]) for k in range(n))
        out.append([math.exp(s[j][i]) / z for j in range(n)])
    return out


def hand_kl(v: list[list[float]], t: list[list[float]]) -> float:
    """sum_ij W_t[i][j] log(W_t[i][j] / W_v[i][j])."""
    wv, wt = hand_structure(v), hand_structure(t)
    return sum(wt[i][j] * math.log(wt[i][j] / wv[i][j]) for i in range(len(v)) for j in range(len(v)))


@pytest.fixture
def pairs():
    g = torch.Generator().manual_seed(3)
    return torch.randn(5, 6, generator=g, dtype=torch.float64), torch.randn(
        5, 6, generator=g, dtype=torch.float64
    )


def test_symmetric_info_nce_matches_hand_computation(pairs):
    v, t = pairs
    for tau in (0.07, 0.5):
        got = symmetric_info_nce(v, t, tau).item()
        assert got == pytest.approx(hand_info_nce(v.tolist(), t.tolist(), tau), rel=1e-9)


def test_info_nce_is_low_for_aligned_pairs_and_asymmetric_in_general(pairs):
    v, t = pairs
    aligned = symmetric_info_nce(v, v * 3.0, 0.07).item()  # scale does not matter (normalised)
    assert aligned < 1e-3 < symmetric_info_nce(v, t, 0.07).item()


def test_similarity_structure_rows_are_distributions(pairs):
    v, _ = pairs
    w = similarity_structure(v)
    torch.testing.assert_close(w.sum(1), torch.ones(5, dtype=torch.float64))
    torch.testing.assert_close(w, torch.tensor(hand_structure(v.tolist()), dtype=torch.float64))


def test_structure_kl_matches_hand_computation_for_both_reductions(pairs):
    v, t = pairs
    total = hand_kl(v.tolist(), t.tolist())
    assert structure_kl(v, t, "sum").item() == pytest.approx(total, rel=1e-9)
    assert structure_kl(v, t, "batchmean").item() == pytest.approx(total / 5, rel=1e-9)
    assert structure_kl(v, v, "sum").item() == pytest.approx(0.0, abs=1e-12)
    # direction: KL(W_text || W_visual), not the reverse
    reverse = hand_kl(t.tolist(), v.tolist())
    assert abs(total - reverse) > 1e-6
    with pytest.raises(ValueError):
        structure_kl(v, t, "mean")


def test_stage_loss_is_info_nce_plus_weighted_kl(pairs):
    v, t = pairs
    expected = hand_info_nce(v.tolist(), t.tolist(), 0.07) + 30 * hand_kl(v.tolist(), t.tolist()) / 5
    assert stage_alignment_loss(v, t).item() == pytest.approx(expected, rel=1e-9)
    released = hand_info_nce(v.tolist(), t.tolist(), 0.07) + 30 * hand_kl(v.tolist(), t.tolist())
    assert stage_alignment_loss(v, t, kl_reduction="sum").item() == pytest.approx(released, rel=1e-9)


def test_stage_loss_has_gradients_for_both_sides(pairs):
    v, t = (x.clone().requires_grad_(True) for x in pairs)
    stage_alignment_loss(v, t).backward()
    assert v.grad.abs().sum() > 0 and t.grad.abs().sum() > 0
