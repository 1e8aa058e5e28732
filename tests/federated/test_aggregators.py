"""Aggregators against byzfl (an independent implementation) on random inputs, and their bounds."""

from __future__ import annotations

import pytest
import torch

from runner.errors import UserError
from runner.federated import aggregators as agg

byzfl = pytest.importorskip("byzfl")


@pytest.fixture(params=[(11, 40, 2), (12, 33, 3)], ids=["odd", "even"])
def stack(request):
    n, d, f = request.param
    g = torch.Generator().manual_seed(n * 7 + d)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    x[:f] += 5.0 * torch.randn(f, d, generator=g, dtype=torch.float64)  # some outliers
    return x, f


def close(a, b, tol=1e-6):
    return torch.allclose(
        torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64), atol=tol
    )


def test_mean_median_trimmed_mean(stack):
    x, f = stack
    assert close(agg.mean(x, f), byzfl.Average()(x.numpy()))
    assert close(agg.coordinate_median(x, f), byzfl.Median()(x.numpy()))
    assert close(agg.trimmed_mean(x, f), byzfl.TrMean(f=f)(x.numpy()))


def test_weighted_mean_equals_repeated_rows():
    x = torch.randn(3, 5, dtype=torch.float64)
    repeated = torch.cat([x[0:1], x[1:2].repeat(2, 1), x[2:3].repeat(3, 1)])
    assert close(agg.weighted_mean(x, 0, torch.tensor([1.0, 2.0, 3.0])), repeated.mean(0))


def test_krum_and_multi_krum(stack):
    x, f = stack
    n = x.shape[0]
    # byzfl scores on n - f - 1 neighbours, Blanchard et al. on n - f - 2: ours at f equals byzfl's at f + 1
    assert close(agg.krum(x, f), byzfl.Krum(f=f + 1)(x.numpy()))
    assert close(agg.multi_krum(x, f, m=n - f - 1), byzfl.MultiKrum(f=f + 1)(x.numpy()))


def test_geometric_median_matches_converged_byzfl(stack):
    x, f = stack
    ours = agg.geometric_median(x, f, max_iter=2000, tol=1e-14, nu=1e-9)
    theirs = byzfl.GeometricMedian(nu=1e-9, T=2000)(x.numpy())
    assert close(ours, theirs, tol=1e-5)
    objective = lambda z: (x - z).norm(dim=1).sum()  # noqa: E731
    assert objective(ours) <= objective(x.mean(0)) + 1e-9


def test_centered_clipping(stack):
    x, f = stack
    for iters in (1, 3):
        assert close(
            agg.centered_clipping(x, f, tau=2.0, iters=iters),
            byzfl.CenteredClipping(L=iters, tau=2.0)(x.numpy()),
        )


def test_nnm_and_bucketing(stack):
    x, f = stack
    assert close(agg.nearest_neighbor_mixing(x, f), byzfl.NNM(f=f)(x.numpy()))
    torch.manual_seed(3)
    theirs = byzfl.Bucketing(s=3)(x.clone())
    torch.manual_seed(3)
    perm = torch.randperm(x.shape[0])
    assert close(agg.bucketing(x, f, bucket_size=3, permutation=perm), theirs)


def test_bulyan_against_brute_force():
    import numpy as np

    g = torch.Generator().manual_seed(0)
    n, f, d = 11, 2, 17
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    x[:f] *= 20
    xs = x.numpy()
    # reference (byzfl has no Bulyan): θ = n − 2f brute-force Krum winners among the remaining
    # vectors, then per coordinate the mean of the β = θ − 2f values closest to the median
    remaining = list(range(n))
    chosen = []
    for _ in range(n - 2 * f):
        k = max(len(remaining) - f - 2, 1)
        scores = [
            sorted(float(((xs[i] - xs[j]) ** 2).sum()) for j in remaining if j != i)[:k] for i in remaining
        ]
        idx = remaining[int(np.argmin([sum(s) for s in scores]))]
        chosen.append(idx)
        remaining.remove(idx)
    sel = xs[chosen]

    med = np.median(sel, axis=0)
    beta = n - 4 * f
    order = np.argsort(np.abs(sel - med), axis=0, kind="stable")[:beta]
    expected = np.take_along_axis(sel, order, axis=0).mean(0)
    assert close(agg.bulyan(x, f), expected)


@pytest.mark.parametrize(
    ("name", "n", "f_ok", "f_bad"),
    [("median", 10, 4, 5), ("krum", 10, 3, 4), ("bulyan", 11, 2, 3), ("geometric_median", 7, 3, 4)],
)
def test_byzantine_bounds(name, n, f_ok, f_bad):
    agg.check_byzantine_bound(name, n, f_ok)
    with pytest.raises(UserError, match=name):
        agg.check_byzantine_bound(name, n, f_bad)
    agg.check_byzantine_bound("mean", n, n - 1)  # not robust, never refused


def test_robust_rules_resist_one_huge_outlier():
    x = torch.randn(9, 20, dtype=torch.float64) * 0.1
    x[0] = 1e6
    for name in ("median", "trimmed_mean", "krum", "multi_krum", "geometric_median", "bulyan"):
        out = agg.AGGREGATORS[name].fn(x, 1)
        assert out.abs().max() < 1.0, name
    assert agg.mean(x).abs().max() > 1e4


def test_bulyan_and_krum_without_byzantine_clients():
    stack = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    assert agg.bulyan(stack, f=0).shape == (4,)
    assert agg.krum_scores(agg.pairwise_sq_distances(stack[:1]), 0).tolist() == [0.0]
    assert agg.krum_scores(agg.pairwise_sq_distances(stack[:2]), 0).shape == (2,)


@pytest.mark.parametrize("n", [11, 12])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_blocked_host_sort_matches_torch_path(monkeypatch, n, dtype):
    """The CPU path (NumPy sort over blocks of columns) against the torch path (used on GPUs), with
    blocks of a few columns so that block edges and a ragged last block are exercised."""
    g = torch.Generator().manual_seed(n)
    x = torch.randn(n, 53, generator=g, dtype=torch.float64).to(dtype)
    x[:2] *= 30.0
    x[3, 5] = float("nan")  # one NaN: the median is NaN there, the trimmed mean trims it
    f = 2
    rules = {
        "median": lambda s: agg.coordinate_median(s, f),
        "trimmed_mean": lambda s: agg.trimmed_mean(s, f),
        "bulyan": lambda s: agg.bulyan(s[:, 6:], f),  # NaN-free columns: NaN poisons the distances
    }
    monkeypatch.setattr(agg, "_BLOCK_BYTES", 7 * n * x.element_size())
    assert agg._sorts_on_host(x)
    blocked = {name: rule(x) for name, rule in rules.items()}
    monkeypatch.setattr(agg, "_sorts_on_host", lambda stack: False)
    tol = 1e-5 if dtype == torch.float32 else 1e-10
    for name, rule in rules.items():
        expected = rule(x)
        assert blocked[name].dtype == dtype, name
        assert torch.allclose(blocked[name], expected, atol=tol, rtol=tol, equal_nan=True), name
    assert torch.isnan(blocked["median"][5]) and not torch.isnan(blocked["trimmed_mean"][5])


def test_rules_do_not_read_tensors_on_the_host(monkeypatch):
    """No ``.item()`` / ``bool()`` / ``float()`` / ``int()`` / ``.tolist()`` in the rules (each one is a
    GPU → host sync); the geometric median reads its convergence flag once per ``check_every``."""
    x = torch.randn(13, 40, generator=torch.Generator().manual_seed(1))
    reads = []

    def read(name):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, **kwargs):
            reads.append(name)
            return original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counted)

    for name in ("item", "tolist", "__bool__", "__float__", "__int__", "__index__"):
        read(name)
    for name, rule in agg.AGGREGATORS.items():
        if name != "geometric_median":
            rule.fn(x, 2)
    agg.nearest_neighbor_mixing(x, 2)
    agg.bucketing(x, 2, bucket_size=3)
    agg.centered_clipping(x, 2, iters=3, center=x[0])
    assert reads == []
    agg.geometric_median(x, 2, max_iter=40, tol=-1.0, check_every=10)  # never converges
    assert len(reads) == 4


def test_geometric_median_checks_rarely_but_stops_where_a_per_iteration_check_does():
    x = torch.randn(15, 30, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    x[:3] += 10.0
    for max_iter in (1, 7, 80):
        every = agg.geometric_median(x, 3, max_iter=max_iter, tol=1e-5, check_every=1)
        rarely = agg.geometric_median(x, 3, max_iter=max_iter, tol=1e-5, check_every=25)
        assert torch.equal(every, rarely)
