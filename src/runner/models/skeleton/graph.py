"""Partitioned adjacency of a skeleton graph (ST-GCN, Yan et al. AAAI 2018, Sec. 3.3 "Partition
strategies").

For a layout with ``V`` joints this builds ``A`` of shape ``[K, V, V]`` where ``A[k] @ X`` aggregates
the ``k``-th neighbour subset (ST-GCN's graph convolution ``sum_k Λ_k^{-1/2}-style normalised A_k X W_k``,
here with ST-GCN's column normalisation ``A_k D^{-1}``, ``D_jj = sum_i Ā_ij`` over the whole
neighbourhood within ``max_hop``):

* ``uniform``  (K = 1): one subset, every joint within ``max_hop`` (itself included);
* ``distance`` (K = max_hop + 1): subset ``d`` holds the joints at hop distance ``d``;
* ``spatial``  (K = 1 + 2·max_hop, the paper's 3 subsets for max_hop 1): the root node itself, then
  per hop the centripetal subset (neighbours closer to the centre than the root node) and, "otherwise",
  the centrifugal subset (the paper's wording; on a tree skeleton no neighbour is as far from the
  centre as its root node, so this equals ST-GCN's code, which files such neighbours with the first
  neighbour subset). Empty subsets are kept so K is fixed by the strategy.

``A[k][j, i]`` is the weight with which joint ``j`` contributes to joint ``i``'s output: the graph
conv in :mod:`runner.models.skeleton.stgcn` computes ``y_i = sum_k sum_j A[k][j, i] x_j`` (ST-GCN's
``einsum('nkctv,kvw->nctw')``), and the column normalisation makes each output joint average over
its neighbourhood.
"""

from __future__ import annotations

import numpy as np

from runner.data.skeleton.layouts import SkeletonLayout
from runner.errors import invalid_value

PARTITIONS = ("uniform", "distance", "spatial")


def hop_distance(num_joints: int, edges, max_hop: int = 1) -> np.ndarray:
    """``[V, V]`` shortest-path length in bones, ``inf`` beyond ``max_hop``."""
    adjacency = np.eye(num_joints, dtype=bool)
    for a, b in edges:
        adjacency[a, b] = adjacency[b, a] = True
    distance = np.full((num_joints, num_joints), np.inf)
    reach = np.eye(num_joints, dtype=bool)
    distance[reach] = 0
    step = adjacency.astype(np.int64)
    power = np.eye(num_joints, dtype=np.int64)
    for hop in range(1, max_hop + 1):
        power = np.minimum(power @ step, 1)
        new = (power > 0) & ~reach
        distance[new] = hop
        reach |= new
    return distance


def normalize_columns(adjacency: np.ndarray) -> np.ndarray:
    """``A D^{-1}`` with ``D_jj = sum_i A_ij`` (zero columns stay zero)."""
    degree = adjacency.sum(axis=0)
    inverse = np.where(degree > 0, 1.0 / np.where(degree > 0, degree, 1.0), 0.0)
    return adjacency * inverse[None, :]


def partitioned_adjacency(layout: SkeletonLayout, strategy: str = "spatial", max_hop: int = 1) -> np.ndarray:
    """``[K, V, V]`` float32 adjacency subsets of ``layout`` for ``strategy`` (see the module docstring)."""
    if strategy not in PARTITIONS:
        raise invalid_value("model.partition", strategy, "one of " + ", ".join(PARTITIONS))
    if max_hop < 1:
        raise invalid_value("model.max_hop", max_hop, "an integer >= 1")
    distance = hop_distance(layout.num_joints, layout.edges, max_hop)
    within = np.isfinite(distance)
    normalized = normalize_columns(within.astype(np.float64))
    if strategy == "uniform":
        subsets = [normalized]
    elif strategy == "distance":
        subsets = [np.where(distance == hop, normalized, 0.0) for hop in range(max_hop + 1)]
    else:
        to_center = distance[:, layout.center]
        # neighbour j of joint i (j contributes to i): compare j's distance to the centre with i's
        closer = to_center[:, None] < to_center[None, :]  # [j, i]: j nearer the centre than i
        subsets = [np.where(distance == 0, normalized, 0.0)]
        for hop in range(1, max_hop + 1):
            at_hop = distance == hop
            subsets.append(np.where(at_hop & closer, normalized, 0.0))
            subsets.append(np.where(at_hop & ~closer, normalized, 0.0))
    return np.stack(subsets).astype(np.float32)
