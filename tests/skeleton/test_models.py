"""Skeleton networks: shapes, the inputs they declare, learned graph parts, and layout checks."""

from __future__ import annotations

import pytest
import torch

from runner.errors import UserError
from runner.models.skeleton import STGCN, AffectiveMLP, JointLSTM, STEPHybrid, STGCNPlusPlus
from runner.models.skeleton.stgcn import GraphConv, TemporalConv


def joints(n=3, m=1, t=20, v=16, c=3):
    return torch.randn(n, m, t, v, c)


SMALL = {"channels": [8, 16], "stride_per_block": [1, 2]}


@pytest.mark.parametrize(
    ("net", "args"),
    [
        (STGCN(4, 3, 16, "egait16", **SMALL), (joints(),)),
        (STGCN(5, 3, 25, "ntu25", partition="uniform", **SMALL), (joints(m=2, v=25),)),
        (STGCNPlusPlus(4, 3, 17, "coco17", **SMALL), (joints(m=2, t=12, v=17),)),
        (
            STEPHybrid(4, 3, 16, "egait16", 27, channels=[8, 8, 8], temporal_kernel_size=9),
            (joints(), torch.randn(3, 27)),
        ),
        (AffectiveMLP(4, 29), (torch.randn(3, 29),)),
        (JointLSTM(4, 3, 16, hidden_size=8), (joints(),)),
    ],
)
def test_logits_shape_and_gradients(net, args):
    out = net(*args)
    assert out.shape == (3, net_classes(net))
    out.sum().backward()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)
    assert len(net.inputs) == len(args)


def net_classes(net) -> int:
    last = [m for m in net.modules() if isinstance(m, torch.nn.Linear | torch.nn.Conv1d)][-1]
    return last.out_features if isinstance(last, torch.nn.Linear) else last.out_channels


def test_step_kernel_75_on_clips_shorter_than_its_padding():
    """STEP's kernel 75 on 16-frame clips (padding 37 > frames): this crashed oneDNN's backward with
    in-conv padding; explicit padding computes the same and runs."""
    net = STEPHybrid(4, 3, 16, "egait16", 27)
    out = net(joints(n=2, t=16), torch.randn(2, 27))
    out.sum().backward()
    assert torch.isfinite(out).all()


def test_temporal_conv_equals_a_padded_conv():
    conv = TemporalConv(4, 6, kernel=5, stride=2, dilation=2)
    reference = torch.nn.Conv2d(4, 6, (5, 1), stride=(2, 1), padding=(4, 0), dilation=(2, 1))
    reference.load_state_dict(conv.conv.state_dict())
    x = torch.randn(2, 4, 30, 7)
    torch.testing.assert_close(conv(x), reference(x))
    with pytest.raises(UserError, match="odd"):
        TemporalConv(4, 4, kernel=4)


def test_graph_conv_aggregates_over_the_partition():
    conv = GraphConv(1, 1, num_subsets=1)
    torch.nn.init.ones_(conv.conv.weight)
    torch.nn.init.zeros_(conv.conv.bias)
    adjacency = torch.tensor([[[0.0, 1.0], [1.0, 0.0]]])  # each joint receives only the other one
    x = torch.tensor([1.0, 5.0]).view(1, 1, 1, 2)
    assert conv(x, adjacency).flatten().tolist() == [5.0, 1.0]


def test_edge_importance_is_learned_and_can_be_switched_off():
    net = STGCN(4, 3, 16, "egait16", **SMALL)
    assert all(p.requires_grad for p in net.backbone.edge_importance)
    net(joints()).sum().backward()
    assert net.backbone.edge_importance[0].grad.abs().sum() > 0
    fixed = STGCN(4, 3, 16, "egait16", edge_importance=False, **SMALL)
    assert not any(p.requires_grad for p in fixed.backbone.edge_importance)


def test_stgcnpp_adjacency_is_a_parameter_initialised_from_the_partition():
    net = STGCNPlusPlus(4, 3, 16, "egait16", **SMALL)
    adjacency = net.blocks[0].gcn.adjacency
    assert isinstance(adjacency, torch.nn.Parameter) and adjacency.shape == (3, 16, 16)


def test_model_layout_must_match_the_data():
    with pytest.raises(UserError, match="ntu25 has 25 joints but the data has 16"):
        STGCN(4, 3, 16, "ntu25")


def test_block_lists_must_agree():
    with pytest.raises(UserError, match="model.stride_per_block"):
        STGCN(4, 3, 16, "egait16", channels=[8, 8], stride_per_block=[1])
