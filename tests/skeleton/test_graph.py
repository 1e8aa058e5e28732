"""Skeleton layouts and the ST-GCN partitions of their graphs."""

from __future__ import annotations

import numpy as np
import pytest

from runner.data.skeleton.layouts import COCO17, EGAIT16, LAYOUTS, NTU25, get_layout
from runner.errors import UserError
from runner.models.skeleton.graph import hop_distance, partitioned_adjacency


@pytest.mark.parametrize("layout", list(LAYOUTS.values()), ids=list(LAYOUTS))
def test_layout_is_a_connected_tree(layout):
    assert len(layout.edges) == layout.num_joints - 1
    distance = hop_distance(layout.num_joints, layout.edges, max_hop=layout.num_joints)
    assert np.isfinite(distance).all(), "every joint is reachable from every other"


def test_layout_sizes_and_the_egait_edges_of_the_card():
    assert (EGAIT16.num_joints, NTU25.num_joints, COCO17.num_joints) == (16, 25, 17)
    assert set(EGAIT16.edges) == {
        (0, 1), (0, 10), (0, 13), (1, 2), (2, 3), (2, 4), (2, 7), (4, 5), (5, 6), (7, 8), (8, 9),
        (10, 11), (11, 12), (13, 14), (14, 15),
    }  # fmt: skip
    assert EGAIT16.center == 0


def test_unknown_layout_is_a_user_error():
    with pytest.raises(UserError, match="dataset.layout.*egait16, ntu25, coco17"):
        get_layout("kinect32")


def test_hop_distance_on_a_chain():
    d = hop_distance(4, [(0, 1), (1, 2), (2, 3)], max_hop=2)
    assert d[0, 0] == 0 and d[0, 1] == 1 and d[0, 2] == 2 and np.isinf(d[0, 3])


@pytest.mark.parametrize("layout", list(LAYOUTS.values()), ids=list(LAYOUTS))
def test_uniform_partition_averages_each_neighbourhood(layout):
    a = partitioned_adjacency(layout, "uniform")
    assert a.shape == (1, layout.num_joints, layout.num_joints)
    np.testing.assert_allclose(a[0].sum(0), 1.0, rtol=1e-6)  # column j: what joint j receives
    support = np.eye(layout.num_joints, dtype=bool)
    for i, j in layout.edges:
        support[i, j] = support[j, i] = True
    np.testing.assert_array_equal(a[0] > 0, support)


def test_distance_partition_splits_self_and_neighbours():
    a = partitioned_adjacency(EGAIT16, "distance")
    assert a.shape == (2, 16, 16)
    np.testing.assert_array_equal(a[0] > 0, np.eye(16, dtype=bool))
    assert a[1][0, 1] > 0 and a[1][1, 1] == 0
    np.testing.assert_allclose(a.sum(0), partitioned_adjacency(EGAIT16, "uniform")[0], rtol=1e-6)


def test_spatial_partition_root_centripetal_centrifugal():
    a = partitioned_adjacency(EGAIT16, "spatial")
    assert a.shape == (3, 16, 16)
    # the three subsets are disjoint and together the uniform neighbourhood
    assert ((a > 0).sum(0) <= 1).all()
    np.testing.assert_allclose(a.sum(0), partitioned_adjacency(EGAIT16, "uniform")[0], rtol=1e-6)
    np.testing.assert_array_equal(a[0] > 0, np.eye(16, dtype=bool))
    # spine (1): the root (0) is nearer the centre (centripetal), the neck (2) farther (centrifugal)
    assert a[1][0, 1] > 0 and a[2][0, 1] == 0
    assert a[2][2, 1] > 0 and a[1][2, 1] == 0
    # the centre joint itself has no centripetal neighbour
    assert a[1][:, EGAIT16.center].sum() == 0


def test_spatial_partition_with_two_hops_has_five_subsets():
    a = partitioned_adjacency(NTU25, "spatial", max_hop=2)
    assert a.shape == (5, 25, 25)


def test_bad_partition_is_a_user_error():
    with pytest.raises(UserError, match="model.partition"):
        partitioned_adjacency(EGAIT16, "random")
