"""ST-GCN (Yan et al., AAAI 2018), written here (card: no maintained package provides it), and the
hybrid STEP classifier (Bhattacharya et al., AAAI 2020; card "Hybrid STEP") that fuses it with the
affective features.

Input layout everywhere: ``joints [N, M, T, V, C]`` (PYSKL's keypoint layout with a batch axis).

* :class:`GraphConv` — the partitioned spatial graph convolution: a 1×1 convolution to ``K·C_out``
  channels, then ``y = sum_k X_k A_k`` with the ``[K, V, V]`` partitioned adjacency
  (:func:`runner.models.skeleton.graph.partitioned_adjacency`) times a learned edge importance.
* :class:`STGCNBlock` — graph conv → BN → ReLU → temporal conv (kernel ``temporal_kernel_size`` × 1, stride)
  → BN → dropout, plus a residual (identity, or 1×1 conv + BN when shape changes), then ReLU.
* :class:`STGCN` — data BN over (joint, channel) of each person ("VC"), the blocks, global average
  pooling over time and joints, mean over persons, a 1×1 classifier. ``inputs = ("joints",)``.
* :class:`STEPHybrid` — STEP's 3-block ST-GCN (3→32, 32→64 s2, 64→64 s2, temporal kernel 75, spatial
  partition, edge importance); the pooled 64-d feature is concatenated with the affective features,
  batch-normalised, then two 1×1 convolutions (96, classes) — with no non-linearity between them, as
  in STEP's code (``hidden_activation`` adds one; a switch, off by default).
  ``inputs = ("joints", "affective")``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from runner.data.skeleton.layouts import get_layout
from runner.errors import UserError, invalid_value
from runner.models.skeleton.graph import partitioned_adjacency


def check_joint_count(layout_name: str, num_joints: int | None) -> None:
    """A network's layout must have the data's joint count (one-line error otherwise)."""
    layout = get_layout(layout_name, "model.layout")
    if num_joints is not None and int(num_joints) != layout.num_joints:
        raise UserError(
            f"model layout {layout.name} has {layout.num_joints} joints but the data has {num_joints}; "
            "leave model.layout unset (it follows dataset.layout) or choose the data's layout"
        )


class TemporalConv(nn.Module):
    """``[N, C_in, T, V] -> [N, C_out, T', V]``: a ``kernel × 1`` convolution over time with "same"
    zero padding (``dilation·(kernel-1)/2`` frames on each side), stride and dilation.

    The padding is applied with :func:`torch.nn.functional.pad` before an unpadded convolution —
    identical arithmetic — because oneDNN's CPU convolution backward (torch 2.14) corrupts the heap when
    the padding is about as long as the input (STEP's kernel 75 on clips of < 40 frames after
    striding: "double free or corruption"; ``tests/skeleton/test_models.py`` runs that case).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        if kernel % 2 != 1:
            raise invalid_value("model.temporal_kernel_size", kernel, "an odd integer")
        self.pad = dilation * (kernel - 1) // 2
        self.conv = nn.Conv2d(
            in_channels, out_channels, (kernel, 1), stride=(stride, 1), dilation=(dilation, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 0, self.pad, self.pad)) if self.pad else x)


class GraphConv(nn.Module):
    """``[N, C_in, T, V] -> [N, C_out, T, V]`` partitioned graph convolution (module docstring)."""

    def __init__(self, in_channels: int, out_channels: int, num_subsets: int) -> None:
        super().__init__()
        self.num_subsets = num_subsets
        self.out_channels = out_channels
        self.conv = nn.Conv2d(in_channels, out_channels * num_subsets, kernel_size=1)

    def forward(self, x: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        n, _, t, v = x.shape
        x = self.conv(x).view(n, self.num_subsets, self.out_channels, t, v)
        return torch.einsum("nkctv,kvw->nctw", x, adjacency)


class STGCNBlock(nn.Module):
    """One spatial-temporal block (module docstring)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        num_subsets: int,
        temporal_kernel_size: int,
        stride: int = 1,
        dropout: float = 0.0,
        residual: bool = True,
    ) -> None:
        super().__init__()
        self.gcn = GraphConv(in_channels, out_channels, num_subsets)
        self.tcn = nn.Sequential(
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
            TemporalConv(out_channels, out_channels, temporal_kernel_size, stride),
            nn.BatchNorm2d(out_channels),
            nn.Dropout(dropout),
        )
        if not residual:
            self.residual = None
        elif in_channels == out_channels and stride == 1:
            self.residual = nn.Identity()
        else:
            self.residual = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=(stride, 1)),
                nn.BatchNorm2d(out_channels),
            )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor, adjacency: torch.Tensor) -> torch.Tensor:
        res = 0 if self.residual is None else self.residual(x)
        return self.relu(self.tcn(self.gcn(x, adjacency)) + res)


class STGCNBackbone(nn.Module):
    """Data BN + ST-GCN blocks + pooling: ``joints [N, M, T, V, C] -> features [N, C_last]``.

    Args:
        in_channels, num_joints: the data's channels and joints.
        layout: the skeleton layout name (follows ``dataset.layout``).
        partition: ``uniform`` / ``distance`` / ``spatial``; ``max_hop``: neighbourhood size.
        channels: output channels of each block; ``stride_per_block``: temporal stride of each block.
        temporal_kernel_size: temporal kernel size (odd).
        edge_importance: learn a ``[K, V, V]`` mask per block multiplying the adjacency.
        dropout: dropout in each block; ``first_residual``: residual in the first block.
    """

    def __init__(
        self,
        in_channels: int,
        num_joints: int,
        layout: str,
        partition: str = "spatial",
        max_hop: int = 1,
        channels: Sequence[int] = (64, 64, 64, 64, 128, 128, 128, 256, 256, 256),
        stride_per_block: Sequence[int] = (1, 1, 1, 1, 2, 1, 1, 2, 1, 1),
        temporal_kernel_size: int = 9,
        edge_importance: bool = True,
        dropout: float = 0.0,
        first_residual: bool = False,
    ) -> None:
        super().__init__()
        check_joint_count(layout, num_joints)
        channels, stride_per_block = list(channels), list(stride_per_block)
        if len(channels) != len(stride_per_block):
            raise invalid_value(
                "model.stride_per_block", stride_per_block, f"one stride per block ({len(channels)})"
            )
        adjacency = torch.from_numpy(partitioned_adjacency(get_layout(layout), partition, max_hop))
        self.register_buffer("adjacency", adjacency)
        self.data_bn = nn.BatchNorm1d(in_channels * num_joints)
        ins = [in_channels, *channels[:-1]]
        self.blocks = nn.ModuleList(
            STGCNBlock(
                c_in,
                c_out,
                adjacency.shape[0],
                temporal_kernel_size,
                stride,
                dropout=dropout,
                residual=(i > 0 or first_residual),
            )
            for i, (c_in, c_out, stride) in enumerate(zip(ins, channels, stride_per_block, strict=True))
        )
        self.edge_importance = nn.ParameterList(
            nn.Parameter(torch.ones_like(adjacency), requires_grad=edge_importance) for _ in self.blocks
        )
        self.out_channels = channels[-1]

    def forward(self, joints: torch.Tensor) -> torch.Tensor:
        n, m, t, v, c = joints.shape
        x = joints.permute(0, 1, 3, 4, 2).reshape(n * m, v * c, t)  # data BN over (V, C) of each person
        x = self.data_bn(x).view(n * m, v, c, t).permute(0, 2, 3, 1)  # [N·M, C, T, V]
        for block, importance in zip(self.blocks, self.edge_importance, strict=True):
            x = block(x, self.adjacency * importance)
        return x.mean(dim=(2, 3)).view(n, m, -1).mean(1)


class STGCN(nn.Module):
    """ST-GCN classifier on raw joints (End2EndNet). Defaults: the original ten blocks
    (64×4, 128×3, 256×3; stride 2 at blocks 5 and 8), temporal kernel 9, spatial partition, learned
    edge importance, dropout 0.5 (Yan et al.). The other arguments are :class:`STGCNBackbone`'s."""

    inputs = ("joints",)

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        num_joints: int,
        layout: str,
        partition: str = "spatial",
        max_hop: int = 1,
        channels: Sequence[int] = (64, 64, 64, 64, 128, 128, 128, 256, 256, 256),
        stride_per_block: Sequence[int] = (1, 1, 1, 1, 2, 1, 1, 2, 1, 1),
        temporal_kernel_size: int = 9,
        edge_importance: bool = True,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.backbone = STGCNBackbone(
            in_channels,
            num_joints,
            layout,
            partition=partition,
            max_hop=max_hop,
            channels=channels,
            stride_per_block=stride_per_block,
            temporal_kernel_size=temporal_kernel_size,
            edge_importance=edge_importance,
            dropout=dropout,
        )
        self.classifier = nn.Conv1d(self.backbone.out_channels, num_classes, kernel_size=1)

    def forward(self, joints: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.backbone(joints)[:, :, None])[:, :, 0]


class STEPHybrid(nn.Module):
    """STEP's hybrid classifier (FeatFusionNet): ST-GCN features ⊕ affective features (module docstring).

    Args:
        num_classes, in_channels, num_joints, layout, num_affective: from the data.
        channels, stride_per_block, temporal_kernel_size, partition, edge_importance, dropout: the ST-GCN part
            (STEP: 32/64/64, stride_per_block 1/2/2, kernel 75, spatial, learned importance, no dropout).
        hidden: width of the first 1×1 convolution after fusion (STEP: 96).
        hidden_activation: put a ReLU between the two 1×1 convolutions (STEP has none).
    """

    inputs = ("joints", "affective")

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        num_joints: int,
        layout: str,
        num_affective: int,
        channels: Sequence[int] = (32, 64, 64),
        stride_per_block: Sequence[int] = (1, 2, 2),
        temporal_kernel_size: int = 75,
        partition: str = "spatial",
        max_hop: int = 1,
        edge_importance: bool = True,
        dropout: float = 0.0,
        hidden: int = 96,
        hidden_activation: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = STGCNBackbone(
            in_channels,
            num_joints,
            layout,
            partition=partition,
            max_hop=max_hop,
            channels=channels,
            stride_per_block=stride_per_block,
            temporal_kernel_size=temporal_kernel_size,
            edge_importance=edge_importance,
            dropout=dropout,
        )
        fused = self.backbone.out_channels + int(num_affective)
        self.fusion_bn = nn.BatchNorm1d(fused)
        self.head = nn.Sequential(
            nn.Conv1d(fused, hidden, kernel_size=1),
            nn.ReLU(inplace=True) if hidden_activation else nn.Identity(),
            nn.Conv1d(hidden, num_classes, kernel_size=1),
        )

    def forward(self, joints: torch.Tensor, affective: torch.Tensor) -> torch.Tensor:
        fused = torch.cat([self.backbone(joints), affective.to(joints.dtype)], dim=1)
        return self.head(self.fusion_bn(fused)[:, :, None])[:, :, 0]
