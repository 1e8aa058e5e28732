"""X3D video network, written from the paper.

Feichtenhofer, "X3D: Expanding Architectures for Efficient Video Recognition", CVPR 2020
(arXiv:2004.04730). Table 1 of the paper gives the X3D-M architecture:

* stem ``conv1``: a 1x3x3 conv, stride (1, 2, 2), 24 channels, followed by a 5x1x1 channel-wise
  (depthwise) temporal conv, BN, ReLU;
* ``res2..res5``: bottleneck residual blocks of width 24/48/96/192 with inner (bottleneck) width
  2.25x the block width and depths 3/5/11/7; each block is 1x1x1 conv -> BN -> ReLU ->
  3x3x3 depthwise conv (spatial stride 2 in a stage's first block) -> BN -> squeeze-excitation
  (ratio 1/16, every other block, Sec. 3 "we use SE blocks ... in every 2nd block") -> Swish ->
  1x1x1 conv -> BN, plus the identity or a 1x1x1-conv+BN projection when the shape changes, then
  ReLU;
* head ``conv5``: 1x1x1 conv to 432 channels + BN + ReLU, global average pool, 1x1x1 conv
  (a linear layer, no BN) to 2048 + ReLU, dropout 0.5, linear classifier.

X3D-XS, -S and -M share the same network and differ only in the input clip (see
:data:`X3D_INPUTS`); X3D-L deepens it (depth factor 5.0 instead of 2.2: 5/10/25/15 blocks).
The paper reports 3.8M parameters for X3D-S/M with 400 Kinetics classes (Table 3); this
implementation has ~3.79M.

Deviations, both optional knobs for small CPU experiments: ``width_factor`` scales every
channel count (rounded, at least 4) and ``depth_factor`` scales the blocks per stage (rounded,
at least 1). ``head_dim`` is not scaled by ``width_factor``. The SE bottleneck width is
``round(inner / 16)`` rounded up to a multiple of 8 (as is usual for SE), at least 8.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from runner.errors import invalid_value
from runner.models.checkpoint import load_local_weights

#: Input clip per variant (paper Table 3 / Sec. 4): frames per clip, temporal sampling stride at
#: 30 fps, training crop size. ``depths`` are the residual blocks per stage.
X3D_INPUTS: dict[str, dict[str, object]] = {
    "xs": {"frames": 4, "stride": 12, "crop": 160, "depths": (3, 5, 11, 7)},
    "s": {"frames": 13, "stride": 6, "crop": 160, "depths": (3, 5, 11, 7)},
    "m": {"frames": 16, "stride": 5, "crop": 224, "depths": (3, 5, 11, 7)},
    "l": {"frames": 16, "stride": 5, "crop": 312, "depths": (5, 10, 25, 15)},
}
X3D_WIDTHS = (24, 48, 96, 192)
X3D_STEM_WIDTH = 24
X3D_INNER_RATIO = 2.25
X3D_SE_RATIO = 1.0 / 16


def _scale(c: float, factor: float) -> int:
    return max(4, int(round(c * factor)))


class SqueezeExcite3d(nn.Module):
    """Squeeze-and-excitation (Hu et al., CVPR 2018) on a 5-D tensor: global pool, FC-ReLU-FC-sigmoid."""

    def __init__(self, channels: int, ratio: float = X3D_SE_RATIO):
        super().__init__()
        hidden = max(8, int(math.ceil(channels * ratio / 8)) * 8)
        self.fc1 = nn.Conv3d(channels, hidden, 1)
        self.act = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv3d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(dim=(2, 3, 4), keepdim=True)
        return x * torch.sigmoid(self.fc2(self.act(self.fc1(s))))


class X3DBlock(nn.Module):
    """X3D bottleneck residual block (paper Table 1, ``res`` stages)."""

    def __init__(self, c_in: int, c_out: int, inner: int, stride: int, use_se: bool):
        super().__init__()
        self.conv_a = nn.Conv3d(c_in, inner, 1, bias=False)
        self.bn_a = nn.BatchNorm3d(inner)
        self.relu = nn.ReLU(inplace=True)
        self.conv_b = nn.Conv3d(
            inner, inner, 3, stride=(1, stride, stride), padding=1, groups=inner, bias=False
        )
        self.bn_b = nn.BatchNorm3d(inner)
        self.se = SqueezeExcite3d(inner) if use_se else nn.Identity()
        self.swish = nn.SiLU(inplace=True)
        self.conv_c = nn.Conv3d(inner, c_out, 1, bias=False)
        self.bn_c = nn.BatchNorm3d(c_out)
        self.bn_c.is_last_bn = True  # zero-gamma init, see X3D._init_weights
        if stride != 1 or c_in != c_out:
            self.proj = nn.Sequential(
                nn.Conv3d(c_in, c_out, 1, stride=(1, stride, stride), bias=False), nn.BatchNorm3d(c_out)
            )
        else:
            self.proj = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn_a(self.conv_a(x)))
        y = self.swish(self.se(self.bn_b(self.conv_b(y))))
        y = self.bn_c(self.conv_c(y))
        return self.relu(y + self.proj(x))


class X3D(nn.Module):
    """X3D-XS/S/M/L for clips ``[B, 3, T, H, W]``.

    Args:
        num_classes: classifier outputs (passed by train.py, not by the config).
        variant: ``"xs"``, ``"s"``, ``"m"`` or ``"l"``; selects depths and documents the input
            clip (:data:`X3D_INPUTS`). The network accepts any T >= 1 and H, W >= 32.
        width_factor, depth_factor: shrink/grow channels and blocks (1.0 = paper).
        head_dim: width of the last linear head layer (2048 in the paper); ``feature_dim``.
        dropout: dropout before the classifier (0.5 in the paper).
        checkpoint: optional local weight file, see :func:`load_local_weights`.

    ``forward_features`` returns the 2048-d (``head_dim``) vector after the head's linear+ReLU;
    ``classify`` is dropout + linear, so ``forward(x) == classify(forward_features(x))``.
    """

    _head_prefixes = ("classifier.",)

    def __init__(
        self,
        num_classes: int,
        variant: str = "s",
        width_factor: float = 1.0,
        depth_factor: float = 1.0,
        head_dim: int = 2048,
        dropout: float = 0.5,
        checkpoint: str | None = None,
    ):
        super().__init__()
        variant = str(variant).lower()
        if variant not in X3D_INPUTS:
            raise invalid_value("model.variant", variant, f"one of {', '.join(X3D_INPUTS)}")
        if width_factor <= 0 or depth_factor <= 0:
            raise invalid_value(
                "model.width_factor/depth_factor", (width_factor, depth_factor), "must be > 0"
            )
        self.variant = variant
        depths = [max(1, int(round(d * depth_factor))) for d in X3D_INPUTS[variant]["depths"]]
        widths = [_scale(w, width_factor) for w in X3D_WIDTHS]
        stem = _scale(X3D_STEM_WIDTH, width_factor)

        self.stem = nn.Sequential(
            nn.Conv3d(3, stem, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1), bias=False),
            nn.Conv3d(stem, stem, (5, 1, 1), padding=(2, 0, 0), groups=stem, bias=False),
            nn.BatchNorm3d(stem),
            nn.ReLU(inplace=True),
        )
        stages = []
        c_in = stem
        for width, depth in zip(widths, depths, strict=True):
            inner = int(round(X3D_INNER_RATIO * width))
            blocks = [
                X3DBlock(c_in if i == 0 else width, width, inner, 2 if i == 0 else 1, use_se=(i % 2 == 0))
                for i in range(depth)
            ]
            stages.append(nn.Sequential(*blocks))
            c_in = width
        self.stages = nn.Sequential(*stages)
        c5 = int(round(X3D_INNER_RATIO * widths[-1]))
        self.conv5 = nn.Sequential(
            nn.Conv3d(c_in, c5, 1, bias=False), nn.BatchNorm3d(c5), nn.ReLU(inplace=True)
        )
        self.pool = nn.AdaptiveAvgPool3d(1)
        self.lin5 = nn.Sequential(nn.Conv3d(c5, head_dim, 1, bias=False), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(head_dim, num_classes)
        self.feature_dim = head_dim
        self.depths = depths
        self.widths = widths
        self._init_weights()
        if checkpoint:
            load_local_weights(self, checkpoint)

    def _init_weights(self) -> None:
        """Kaiming-normal (fan_out) convs, BN gamma 1 except 0 for each block's last BN
        (Goyal et al. 2017, as in the X3D reference training), N(0, 0.01) classifier."""
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm3d):
                nn.init.constant_(m.weight, 0.0 if getattr(m, "is_last_bn", False) else 1.0)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv5(self.stages(self.stem(x)))
        return self.lin5(self.pool(x)).flatten(1)

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.forward_features(x))
