"""ST-GCN++ (Duan et al., "PYSKL", ACM MM 2022; card "Read from STEP and PYSKL"), written here: the
stronger End2EndNet model of the benchmark.

Differences from ST-GCN (:mod:`runner.models.skeleton.stgcn`), as PYSKL describes them:

* the adjacency of every block is a learned parameter initialised with the partitioned graph
  (``adaptive='init'``), instead of a fixed graph times an edge-importance mask;
* the graph convolution has its own residual (1×1 conv + BN when the width changes) and BN + ReLU;
* the temporal module is multi-scale: six branches, each a 1×1 bottleneck to a sixth of the width,
  four of them a temporal conv of kernel 3 with dilation 1, 2, 3, 4, one a 3-frame max pool, one a
  strided 1×1 conv only; the concatenation goes through BN → ReLU → 1×1 conv → BN → dropout;
* the block residual is a strided 1×1 temporal unit (conv + BN) when shape changes.

Defaults are PYSKL's ST-GCN++ (ten blocks, 64/128/256 channels, widen and stride 2 at blocks 5 and 8).
``inputs = ("joints",)``; joints are ``[N, M, T, V, C]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from runner.data.skeleton.layouts import get_layout
from runner.errors import invalid_value
from runner.models.skeleton.graph import partitioned_adjacency
from runner.models.skeleton.stgcn import TemporalConv, check_joint_count


class AdaptiveGraphConv(nn.Module):
    """Graph conv with a learned adjacency initialised from the partition, residual, BN and ReLU."""

    def __init__(self, in_channels: int, out_channels: int, adjacency: torch.Tensor) -> None:
        super().__init__()
        self.num_subsets = adjacency.shape[0]
        self.out_channels = out_channels
        self.adjacency = nn.Parameter(adjacency.clone())
        self.conv = nn.Conv2d(in_channels, out_channels * self.num_subsets, kernel_size=1)
        self.bn = nn.BatchNorm2d(out_channels)
        self.down = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1), nn.BatchNorm2d(out_channels)
            )
        )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, t, v = x.shape
        y = self.conv(x).view(n, self.num_subsets, self.out_channels, t, v)
        y = torch.einsum("nkctv,kvw->nctw", y, self.adjacency)
        return self.act(self.bn(y) + self.down(x))


class TemporalUnit(nn.Module):
    """Temporal conv (kernel × 1, stride, dilation) + BN."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int = 1, stride: int = 1, dilation: int = 1
    ):
        super().__init__()
        self.conv = TemporalConv(in_channels, out_channels, kernel, stride, dilation)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(x))


class MultiScaleTemporalConv(nn.Module):
    """ST-GCN++'s multi-scale temporal module (module docstring)."""

    def __init__(
        self,
        channels: int,
        stride: int = 1,
        kernel: int = 3,
        dilation_per_branch: Sequence[int] = (1, 2, 3, 4),
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        num_branches = len(dilation_per_branch) + 2
        width = channels // num_branches
        widths = [channels - width * (num_branches - 1)] + [width] * (num_branches - 1)
        branches: list[nn.Module] = []
        for w, d in zip(widths, dilation_per_branch, strict=False):
            branches.append(
                nn.Sequential(
                    nn.Conv2d(channels, w, kernel_size=1),
                    nn.BatchNorm2d(w),
                    nn.ReLU(inplace=True),
                    TemporalUnit(w, w, kernel, stride, d),
                )
            )
        w_pool, w_point = widths[len(dilation_per_branch)], widths[len(dilation_per_branch) + 1]
        branches.append(
            nn.Sequential(
                nn.Conv2d(channels, w_pool, kernel_size=1),
                nn.BatchNorm2d(w_pool),
                nn.ReLU(inplace=True),
                nn.MaxPool2d((3, 1), stride=(stride, 1), padding=(1, 0)),
            )
        )
        branches.append(nn.Conv2d(channels, w_point, kernel_size=1, stride=(stride, 1)))
        self.branches = nn.ModuleList(branches)
        self.transform = nn.Sequential(
            nn.BatchNorm2d(channels), nn.ReLU(inplace=True), nn.Conv2d(channels, channels, kernel_size=1)
        )
        self.bn = nn.BatchNorm2d(channels)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([branch(x) for branch in self.branches], dim=1)
        return self.drop(self.bn(self.transform(y)))


class STGCNPPBlock(nn.Module):
    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        adjacency: torch.Tensor,
        stride: int,
        residual: bool,
        kernel: int,
        dilation_per_branch: Sequence[int],
        dropout: float,
    ) -> None:
        super().__init__()
        self.gcn = AdaptiveGraphConv(in_channels, out_channels, adjacency)
        self.tcn = MultiScaleTemporalConv(out_channels, stride, kernel, dilation_per_branch, dropout)
        if not residual:
            self.residual = None
        elif in_channels == out_channels and stride == 1:
            self.residual = nn.Identity()
        else:
            self.residual = TemporalUnit(in_channels, out_channels, kernel=1, stride=stride)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        res = 0 if self.residual is None else self.residual(x)
        return self.relu(self.tcn(self.gcn(x)) + res)


class STGCNPlusPlus(nn.Module):
    """ST-GCN++ classifier (module docstring).

    Args:
        num_classes, in_channels, num_joints, layout: from the data.
        channels, stride_per_block: per block (PYSKL: 64×4, 128×3, 256×3; stride 2 at blocks 5 and 8).
        partition, max_hop: initial graph (PYSKL: spatial).
        temporal_kernel_size, dilation_per_branch: the multi-scale temporal branches (PYSKL: 3; 1, 2, 3, 4).
        dropout: in the temporal modules; ``head_dropout``: before the classifier.
    """

    inputs = ("joints",)

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        num_joints: int,
        layout: str,
        channels: Sequence[int] = (64, 64, 64, 64, 128, 128, 128, 256, 256, 256),
        stride_per_block: Sequence[int] = (1, 1, 1, 1, 2, 1, 1, 2, 1, 1),
        partition: str = "spatial",
        max_hop: int = 1,
        temporal_kernel_size: int = 3,
        dilation_per_branch: Sequence[int] = (1, 2, 3, 4),
        dropout: float = 0.0,
        head_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_joint_count(layout, num_joints)
        channels, stride_per_block = list(channels), list(stride_per_block)
        if len(channels) != len(stride_per_block):
            raise invalid_value(
                "model.stride_per_block", stride_per_block, f"one stride per block ({len(channels)})"
            )
        adjacency = torch.from_numpy(partitioned_adjacency(get_layout(layout), partition, max_hop))
        self.data_bn = nn.BatchNorm1d(in_channels * num_joints)
        ins = [in_channels, *channels[:-1]]
        self.blocks = nn.ModuleList(
            STGCNPPBlock(c_in, c_out, adjacency, s, i > 0, temporal_kernel_size, dilation_per_branch, dropout)
            for i, (c_in, c_out, s) in enumerate(zip(ins, channels, stride_per_block, strict=True))
        )
        self.head = nn.Sequential(nn.Dropout(head_dropout), nn.Linear(channels[-1], num_classes))

    def forward(self, joints: torch.Tensor) -> torch.Tensor:
        n, m, t, v, c = joints.shape
        x = joints.permute(0, 1, 3, 4, 2).reshape(n * m, v * c, t)
        x = self.data_bn(x).view(n * m, v, c, t).permute(0, 2, 3, 1)
        for block in self.blocks:
            x = block(x)
        return self.head(x.mean(dim=(2, 3)).view(n, m, -1).mean(1))
