"""Robust aggregation rules: pure functions on an ``(n, d)`` stack of client messages.

Every rule has the signature ``rule(stack, f=0, weights=None, **options) -> (d,)`` where ``f`` is the
number of Byzantine messages the rule must tolerate. Pre-aggregations (:func:`nearest_neighbor_mixing`,
:func:`bucketing`) map ``(n, d) -> (n', d)`` and run before a rule.

Distance-based rules (Krum, Multi-Krum, Bulyan, NNM, geometric median) work on the ``n × n`` Gram
matrix ``X Xᵀ`` of the centred stack, computed once: at ``n = 100``, ``d = 10⁶`` one Gram matrix
costs about as much as two passes over the stack, and every later step is ``O(n²)``. The geometric
median runs Weiszfeld's iterations entirely in coefficient space (``z = Xᵀc``), materialising ``z``
only at the end. Coordinate-wise rules (median, trimmed mean, Bulyan's last step) sort each
coordinate's ``n`` values; on CPU through NumPy's vectorised sort over cache-sized blocks of columns
(see :func:`_blocked_sorted_reduce`).

No rule reads a tensor on the host (a GPU would wait for it) except the geometric median, which reads
its convergence flag once every ``check_every`` iterations.

:data:`AGGREGATORS` maps config names to :class:`AggregationRule` (function + Byzantine bound);
:data:`PRE_AGGREGATORS` maps names to pre-aggregation functions.

References: Krum / Multi-Krum (Blanchard et al., NeurIPS 2017), coordinate median and trimmed mean
(Yin et al., ICML 2018), geometric median (Weiszfeld; smoothed as in Pillutla et al., RFA 2022),
centered clipping (Karimireddy et al., ICML 2021), Bulyan (El Mhamdi et al., ICML 2018), NNM
(Allouah et al., AISTATS 2023), bucketing (Karimireddy et al., ICLR 2022).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from runner.errors import UserError

__all__ = [
    "AGGREGATORS",
    "PRE_AGGREGATORS",
    "AggregationRule",
    "bucketing",
    "bulyan",
    "centered_clipping",
    "centred_gram",
    "check_byzantine_bound",
    "coordinate_median",
    "geometric_median",
    "krum",
    "krum_scores",
    "mean",
    "multi_krum",
    "nearest_neighbor_mixing",
    "pairwise_sq_distances",
    "trimmed_mean",
    "weighted_mean",
]


# ---- helpers ---------------------------------------------------------------------------------------
def centred_gram(stack: torch.Tensor) -> torch.Tensor:
    """``(n, n)`` Gram matrix ``(X − 1μᵀ)(X − 1μᵀ)ᵀ`` of the mean-centred stack (centring keeps the
    float32 cancellation of ``‖xᵢ‖² + ‖xⱼ‖² − 2xᵢ·xⱼ`` small when the messages share a large mean).

    Accumulated over blocks of columns centred in a small reused buffer: no ``(n, d)`` copy.
    """
    n, d = stack.shape
    shift = mean(stack)
    gram = stack.new_zeros(n, n)
    block = max(1, 4 * _BLOCK_BYTES // (n * stack.element_size()))
    buffer = stack.new_empty(n, min(block, d))
    for start in range(0, d, block):
        stop = min(start + block, d)
        centred = buffer[:, : stop - start]
        torch.sub(stack[:, start:stop], shift[start:stop], out=centred)
        gram.addmm_(centred, centred.T)
    return gram


def pairwise_sq_distances(stack: torch.Tensor) -> torch.Tensor:
    """``(n, n)`` squared Euclidean distances via the Gram matrix of the mean-centred stack."""
    gram = centred_gram(stack)
    sq = gram.diagonal()
    return (sq[:, None] + sq[None, :] - 2 * gram).clamp_min_(0.0).fill_diagonal_(0.0)


def krum_scores(sq_dist: torch.Tensor, f: int) -> torch.Tensor:
    """Krum score of every vector: sum of squared distances to its ``n − f − 2`` nearest others."""
    n = sq_dist.shape[0]
    if n == 1:
        return sq_dist.new_zeros(1)
    k = min(max(n - f - 2, 1), n - 1)
    # the smallest entry of each row is the vector itself (distance 0): skip it
    nearest = sq_dist.topk(k + 1, dim=1, largest=False).values[:, 1:]
    return nearest.sum(dim=1)


# Coordinate-wise rules (median, trimmed mean, Bulyan's last step) need, per coordinate, an order
# statistic of the n values in one column of the (n, d) stack. On CPU, torch's selection and sort
# kernels along dim 0 are scalar (an nth_element or sort on (value, index) pairs per column, gathered
# with stride d), which is where byzfl's ``torch.quantile`` spends its time too. NumPy's sort is
# vectorised (x86-simd-sort / Highway on AVX2, AVX-512 and NEON), so on CPU the stack is processed in
# blocks of columns: a block is transposed into a small contiguous buffer that stays in cache, its
# rows (= columns of the stack) are sorted in place, and the rule reads what it needs from the sorted
# rows. No (n, d) copy is made; the output is written block by block.
_BLOCK_BYTES = 2**21  # one transposed block: small enough to stay in a core's L2 cache
_NUMPY_SORTABLE = (torch.float32, torch.float64)


def _sorts_on_host(stack: torch.Tensor) -> bool:
    """True where the blocked NumPy sort applies: a CPU tensor NumPy can view, no autograd graph."""
    return stack.device.type == "cpu" and stack.dtype in _NUMPY_SORTABLE and not stack.requires_grad


def _blocked_sorted_reduce(
    stack: torch.Tensor, reduce: Callable[[np.ndarray, np.ndarray], None], rows: int | None = None
) -> torch.Tensor:
    """``(d,)`` result of ``reduce(sorted_block, out_block)`` over blocks of columns of ``stack``.

    ``sorted_block`` is ``(c, n)``: row ``j`` holds column ``j`` of the block sorted ascending (NaN
    last); ``reduce`` writes the ``c`` results into ``out_block``.
    """
    n, d = stack.shape
    values = stack.numpy()
    out = np.empty(d, dtype=values.dtype)
    block = max(1, _BLOCK_BYTES // (n * values.itemsize))
    buffer = np.empty((min(block, d), n), dtype=values.dtype)
    for start in range(0, d, block):
        stop = min(start + block, d)
        sorted_block = buffer[: stop - start]
        np.copyto(sorted_block, values[:, start:stop].T)
        sorted_block.sort(axis=1)
        reduce(sorted_block, out[start:stop])
    return torch.from_numpy(out)


def _sorted_middle(stack: torch.Tensor) -> torch.Tensor:
    """Coordinate-wise median, the mean of the two middle values when ``n`` is even; NaN where a
    column holds a NaN (as ``torch.median`` / ``torch.quantile``)."""
    n = stack.shape[0]
    if _sorts_on_host(stack):
        lo, hi = (n - 1) // 2, n // 2

        def middle(block: np.ndarray, out: np.ndarray) -> None:
            if lo == hi:
                np.copyto(out, block[:, lo])
            else:
                np.add(block[:, lo], block[:, hi], out=out)
                out *= 0.5
            np.copyto(out, block[:, n - 1], where=np.isnan(block[:, n - 1]))  # NaN sorts last

        return _blocked_sorted_reduce(stack, middle)
    if n % 2:
        return stack.median(dim=0).values
    return torch.quantile(stack, 0.5, dim=0)  # averages the two middle values


# ---- rules -----------------------------------------------------------------------------------------
def mean(stack: torch.Tensor, f: int = 0, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Plain average (FedAvg with equal weights). Not robust: one Byzantine message moves it anywhere.

    Computed as ``1ᵀX / n``, one matrix-vector product (a single streaming pass over the stack).
    """
    return (stack.new_ones(stack.shape[0]) @ stack) / stack.shape[0]


def weighted_mean(stack: torch.Tensor, f: int = 0, weights: torch.Tensor | None = None) -> torch.Tensor:
    """``Σ wᵢ xᵢ / Σ wᵢ`` (FedAvg's data-size weighting, McMahan et al. 2017); equal weights if None."""
    if weights is None:
        return mean(stack)
    w = weights.to(stack.dtype)
    return (w @ stack) / w.sum()


def coordinate_median(stack: torch.Tensor, f: int = 0, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Coordinate-wise median (Yin et al. 2018); the mean of the two middle values when ``n`` is even."""
    return _sorted_middle(stack)


def trimmed_mean(stack: torch.Tensor, f: int = 0, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Coordinate-wise mean after removing the ``f`` largest and ``f`` smallest values (Yin et al. 2018).

    Sort-based on every device (NaN sorts last, so up to ``f`` NaN per coordinate are trimmed away);
    on CPU by the blocked NumPy sort (see :func:`_blocked_sorted_reduce`).
    """
    n = stack.shape[0]
    if f == 0:
        return mean(stack)
    if _sorts_on_host(stack):

        def middle_mean(block: np.ndarray, out: np.ndarray) -> None:
            block[:, f : n - f].sum(axis=1, out=out)
            out /= n - 2 * f

        return _blocked_sorted_reduce(stack, middle_mean)
    return stack.sort(dim=0).values[f : n - f].mean(dim=0)


def krum(stack: torch.Tensor, f: int = 0, weights: torch.Tensor | None = None) -> torch.Tensor:
    """The message with the smallest Krum score (Blanchard et al. 2017, ``n − f − 2`` neighbours)."""
    scores = krum_scores(pairwise_sq_distances(stack), f)
    # index_select with a device index: no host sync (indexing by a 0-d tensor reads it on the host)
    return stack.index_select(0, scores.argmin().view(1)).squeeze(0)


def multi_krum(
    stack: torch.Tensor, f: int = 0, weights: torch.Tensor | None = None, m: int | None = None
) -> torch.Tensor:
    """Average of the ``m`` messages with the smallest Krum scores (default ``m = n − f``)."""
    n = stack.shape[0]
    m = n - f if m is None else int(m)
    scores = krum_scores(pairwise_sq_distances(stack), f)
    chosen = scores.topk(m, largest=False).indices
    # one matrix-vector product with 1/m on the chosen rows: no (m, d) gather
    coefficients = stack.new_zeros(n).index_fill_(0, chosen, 1.0 / m)
    return coefficients @ stack


def geometric_median(
    stack: torch.Tensor,
    f: int = 0,
    weights: torch.Tensor | None = None,
    max_iter: int = 80,
    tol: float = 1e-5,
    nu: float = 1e-6,
    check_every: int = 10,
) -> torch.Tensor:
    """Smoothed Weiszfeld iterations for ``argmin_z Σ αᵢ max(ν, ‖z − xᵢ‖)`` (the card: 80 iterations,
    tolerance 1e-5), started from the (weighted) mean.

    The iterate is kept as coefficients ``c`` (``z = Xᵀc``, ``Σc = 1``) so each iteration is ``O(n²)``
    on the Gram matrix: ``‖xᵢ − z‖² = Gᵢᵢ − 2(Gc)ᵢ + cᵀGc``. Stops when the relative change of the
    objective is below ``tol``. The test runs on the device: once it holds, the iterate is frozen
    (``torch.where``), and the host reads the flag only every ``check_every`` iterations to stop early,
    so a GPU waits for the host at most ``max_iter / check_every`` times; the result equals that of
    a loop that checks every iteration.
    """
    n = stack.shape[0]
    alpha = torch.ones(n, dtype=torch.float64, device=stack.device)
    if weights is not None:
        alpha = weights.to(device=stack.device, dtype=torch.float64)
    alpha = alpha / alpha.sum()
    gram = centred_gram(stack).to(torch.float64)
    diag = gram.diagonal()
    coeff = alpha.clone()
    previous = torch.full((), math.inf, dtype=torch.float64, device=stack.device)
    done = torch.zeros((), dtype=torch.bool, device=stack.device)
    for step in range(max_iter):
        gc = gram @ coeff
        dist = (diag - 2 * gc + coeff @ gc).clamp_min(0.0).sqrt().clamp_min(nu)
        objective = alpha @ dist
        beta = alpha / dist
        coeff = torch.where(done, coeff, beta / beta.sum())
        done = done | ((previous - objective).abs() <= tol * objective.clamp_min(1e-12))
        previous = objective
        if (step + 1) % check_every == 0 and bool(done):
            break
    return coeff.to(stack.dtype) @ stack  # Σc = 1: the centring cancels


def centered_clipping(
    stack: torch.Tensor,
    f: int = 0,
    weights: torch.Tensor | None = None,
    tau: float = 10.0,
    iters: int = 1,
    center: torch.Tensor | None = None,
) -> torch.Tensor:
    """Centered clipping (Karimireddy et al. 2021): ``v ← v + mean_i clip_τ(xᵢ − v)``, ``iters`` times,
    from ``center`` (the previous aggregate in the paper; zero when None).

    Distances come from ``‖xᵢ‖² − 2xᵢ·v + ‖v‖²`` (matrix-vector products, no ``(n, d)`` difference).
    """
    n = stack.shape[0]
    sq_norms = torch.linalg.vector_norm(stack, dim=1).square()
    v = None if center is None else center.to(stack.dtype)
    for _ in range(iters):
        if v is None:  # from zero: the distances are the norms
            dist = sq_norms.sqrt()
        else:
            dist = (sq_norms - 2 * (stack @ v) + v @ v).clamp_min(0.0).sqrt()
        scale = (tau / dist.clamp_min(1e-12)).clamp(max=1.0)
        # v + mean_i s_i (x_i - v) = (1 - mean s) v + (s @ X) / n
        step = (scale @ stack) / n
        v = step if v is None else (1 - scale.mean()) * v + step
    return torch.zeros_like(stack[0]) if v is None else v


def bulyan(stack: torch.Tensor, f: int = 0, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Bulyan (El Mhamdi et al. 2018) over Krum: select ``θ = n − 2f`` messages by repeatedly taking
    the Krum winner among the remaining ones, then per coordinate average the ``β = θ − 2f`` selected
    values closest to the coordinate median.

    The selection runs on the device: removed messages get infinite distances and scores instead of
    being cut out of the distance matrix, so no index goes through the host. On CPU the last step
    uses the blocked sort: in a sorted column the ``β`` values closest to the median are a window of
    consecutive ones, the window (of the ``2f + 1`` possible) with the smallest largest distance.
    """
    n = stack.shape[0]
    theta = n - 2 * f
    beta = theta - 2 * f
    sq_dist = pairwise_sq_distances(stack)
    removed = torch.zeros(n, dtype=torch.bool, device=stack.device)
    inf = torch.tensor(math.inf, dtype=sq_dist.dtype, device=stack.device)
    winners = []
    for step in range(theta):
        left = n - step
        k = min(max(left - f - 2, 1), left - 1)  # krum_scores on the remaining messages
        masked = torch.where(removed[None, :], inf, sq_dist)
        scores = masked.topk(k + 1, dim=1, largest=False).values[:, 1:].sum(dim=1)
        winner = torch.where(removed, inf, scores).argmin().view(1)
        winners.append(winner)
        removed = removed.index_fill(0, winner, True)
    chosen = stack.index_select(0, torch.cat(winners))
    if _sorts_on_host(chosen):
        mid_lo, mid_hi = (theta - 1) // 2, theta // 2
        offsets = np.arange(beta)

        def closest_mean(block: np.ndarray, out: np.ndarray) -> None:
            median = 0.5 * (block[:, mid_lo] + block[:, mid_hi])
            # window starting at s covers block[:, s : s + β]; its largest distance to the median
            reach = np.maximum(
                median[:, None] - block[:, : theta - beta + 1], block[:, beta - 1 :] - median[:, None]
            )
            first = reach.argmin(axis=1)
            np.take_along_axis(block, first[:, None] + offsets, axis=1).sum(axis=1, out=out)
            out /= beta
            np.copyto(out, block[:, theta - 1], where=np.isnan(block[:, theta - 1]))  # NaN sorts last

        return _blocked_sorted_reduce(chosen, closest_mean)
    median = _sorted_middle(chosen)
    closest = (chosen - median).abs().topk(beta, dim=0, largest=False).indices
    return chosen.gather(0, closest).mean(dim=0)


# ---- pre-aggregation -------------------------------------------------------------------------------
def nearest_neighbor_mixing(stack: torch.Tensor, f: int = 0, **_: object) -> torch.Tensor:
    """NNM (Allouah et al. 2023): replace each message by the mean of its ``n − f`` nearest messages
    (itself included), as one mixing-matrix product ``W X`` (no ``(n, n − f, d)`` gather)."""
    n = stack.shape[0]
    k = n - f
    neighbours = pairwise_sq_distances(stack).topk(k, dim=1, largest=False).indices
    mixing = torch.zeros(n, n, dtype=stack.dtype, device=stack.device)
    mixing.scatter_(1, neighbours, 1.0 / k)
    return mixing @ stack


def bucketing(
    stack: torch.Tensor,
    f: int = 0,
    bucket_size: int = 2,
    generator: torch.Generator | None = None,
    permutation: torch.Tensor | None = None,
    **_: object,
) -> torch.Tensor:
    """Bucketing (Karimireddy et al. 2022): shuffle, average buckets of ``bucket_size`` messages
    (a last incomplete bucket is averaged too) → ``ceil(n / s)`` messages."""
    n = stack.shape[0]
    if permutation is None:
        permutation = torch.randperm(n, generator=generator).to(stack.device)
    shuffled = stack[permutation]
    full = n // bucket_size
    out = shuffled[: full * bucket_size].reshape(full, bucket_size, -1).mean(dim=1)
    if full * bucket_size < n:
        out = torch.cat([out, shuffled[full * bucket_size :].mean(dim=0, keepdim=True)])
    return out


# ---- registry --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AggregationRule:
    """An aggregation function with the largest Byzantine count it tolerates for ``n`` messages."""

    fn: Callable[..., torch.Tensor]
    max_byzantine: Callable[[int], int] | None
    bound: str
    takes_center: bool = False


def _half(n: int) -> int:  # 2f < n
    return (n - 1) // 2


AGGREGATORS: dict[str, AggregationRule] = {
    "mean": AggregationRule(mean, None, "none (not robust)"),
    "weighted_mean": AggregationRule(weighted_mean, None, "none (not robust)"),
    "median": AggregationRule(coordinate_median, _half, "2f < n"),
    "trimmed_mean": AggregationRule(trimmed_mean, _half, "2f < n"),
    "krum": AggregationRule(krum, lambda n: (n - 3) // 2, "n > 2f + 2"),
    "multi_krum": AggregationRule(multi_krum, lambda n: (n - 3) // 2, "n > 2f + 2"),
    "geometric_median": AggregationRule(geometric_median, _half, "2f < n"),
    "centered_clipping": AggregationRule(centered_clipping, _half, "2f < n", takes_center=True),
    "bulyan": AggregationRule(bulyan, lambda n: (n - 3) // 4, "n >= 4f + 3"),
}

PRE_AGGREGATORS: dict[str, Callable[..., torch.Tensor]] = {
    "nnm": nearest_neighbor_mixing,
    "bucketing": bucketing,
}


def check_byzantine_bound(name: str, n: int, f: int, context: str = "") -> None:
    """UserError naming the rule's bound when ``f`` Byzantine of ``n`` messages exceed it."""
    rule = AGGREGATORS[name]
    if rule.max_byzantine is None or f <= rule.max_byzantine(n):
        return
    raise UserError(
        f"fl_strategy.aggregator={name} tolerates f Byzantine of n messages only when {rule.bound}; "
        f"got f={f}, n={n}{context} (at most f={max(rule.max_byzantine(n), 0)}); lower "
        "fl_strategy.byzantine_fraction, add clients, or pick another aggregator"
    )
