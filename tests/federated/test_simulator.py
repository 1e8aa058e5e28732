"""Both execution paths give the same round; bad inputs fail clearly."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from runner.errors import UserError
from runner.federated.simulator import BufferLayout, ClientData, LocalTraining, ParamLayout
from runner.models.small import SmallCNN


@pytest.mark.parametrize("steps", [1, 3])
def test_vectorized_equals_sequential_float64(steps):
    torch.manual_seed(0)
    net = SmallCNN(1, 5, image_size=12, channels=(3, 4), hidden=8, groups=1).double()
    layout = ParamLayout(net)
    flat = layout.flatten([p.detach() for p in net.parameters()])
    start = flat.expand(4, -1).clone() + 0.01 * torch.randn(4, layout.dim, dtype=torch.float64)
    xs = torch.randn(4, steps, 6, 1, 12, 12, dtype=torch.float64)
    ys = torch.randint(0, 5, (4, steps, 6))
    training = LocalTraining(net, layout, lr=0.1, steps=steps, weight_decay=1e-3)
    vec, vec_loss = training.vectorized(start, xs, ys)
    seq, seq_loss = training.sequential(start, xs, ys)
    assert torch.allclose(vec, seq, atol=1e-6, rtol=0)
    assert torch.allclose(vec_loss, seq_loss, atol=1e-6)
    if steps == 1:  # one step: the pseudo-gradient is the gradient (+ weight decay)
        leaf = start[0].clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(training.client_loss(leaf, xs[0, 0], ys[0, 0]), leaf)
        assert torch.allclose(seq[0], grad + 1e-3 * start[0], atol=1e-10)


def test_layout_round_trip_and_cumulative_batchnorm_refused():
    net = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    layout = ParamLayout(net)
    flat = layout.flatten(list(net.parameters()))
    assert all(
        torch.equal(a, b) for a, b in zip(layout.unflatten(flat).values(), net.parameters(), strict=True)
    )
    bn = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2))
    buffers = BufferLayout(bn)
    assert buffers.names == ["1.running_mean", "1.running_var"] and buffers.dim == 4
    assert set(buffers.counters) == {"1.num_batches_tracked"}
    with pytest.raises(UserError, match="momentum=None"):
        BufferLayout(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2, momentum=None)))


def test_client_sampling_stays_within_each_client():
    import numpy as np

    parts = [np.array([0, 1]), np.array([2, 3, 4]), np.array([5])]
    data = ClientData.from_parts(torch.zeros(6, 1), torch.zeros(6, dtype=torch.long), parts)
    idx = data.sample_indices(torch.tensor([2, 0, 1]), 2, 50, torch.Generator().manual_seed(0))
    assert set(idx[0].flatten().tolist()) == {5}
    assert set(idx[1].flatten().tolist()) == {0, 1}
    assert set(idx[2].flatten().tolist()) == {2, 3, 4}
