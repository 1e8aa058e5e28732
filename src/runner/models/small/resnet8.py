"""ResNet-8 for 32×32 images (the CIFAR-LT federated model of CReFF / CLIP2FL / FedSM, card ``fedsm.md``).

He et al.'s CIFAR ResNet with one basic block per stage: a 3×3 stem conv, three stages of one
basic block each (widths 16 / 32 / 64 by default, stride 1 / 2 / 2), global average pooling and a
linear ``classifier``: 1 + 3·2 + 1 = 8 weighted layers.

Normalisation: ``norm="batch"`` (BatchNorm with running statistics, as the original ResNet-8; the FL
engine keeps them per client and evaluates in eval mode) or ``norm="group"`` (GroupNorm).

``forward(x, return_features=True)`` gives ``(logits, features)`` with ``features`` the pooled
``widths[-1]``-dimensional vector the classifier reads (what FedSM's prototypes and pseudo-features
live on).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ResNet8"]


def _norm(kind: str, channels: int, groups: int) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(min(groups, channels), channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    raise ValueError(f"model.norm must be 'group' or 'batch', got {kind!r}")


class BasicBlock(nn.Module):
    """Two 3×3 convs with a residual connection (1×1 projection when the shape changes)."""

    def __init__(self, cin: int, cout: int, stride: int, norm: str, groups: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.norm1 = _norm(norm, cout, groups)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.norm2 = _norm(norm, cout, groups)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), _norm(norm, cout, groups)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet8(nn.Module):
    """ResNet-8 (module docstring).

    Args:
        in_channels, num_classes: data properties (filled in from the datamodule).
        widths: channels of the three stages.
        norm: ``group`` | ``batch`` (with running statistics).
        groups: GroupNorm groups (capped at the channel count).
        image_size: accepted (the datamodule passes it) and unused: global pooling takes any size.
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        widths: tuple[int, int, int] = (16, 32, 64),
        norm: str = "group",
        groups: int = 4,
        image_size: int | None = None,
    ) -> None:
        super().__init__()
        w1, w2, w3 = (int(w) for w in widths)
        self.stem = nn.Sequential(
            nn.Conv2d(int(in_channels), w1, 3, padding=1, bias=False), _norm(norm, w1, groups), nn.ReLU()
        )
        self.layer1 = BasicBlock(w1, w1, 1, norm, groups)
        self.layer2 = BasicBlock(w1, w2, 2, norm, groups)
        self.layer3 = BasicBlock(w2, w3, 2, norm, groups)
        self.classifier = nn.Linear(w3, int(num_classes))

    def forward(self, x: torch.Tensor, return_features: bool = False):
        h = self.layer3(self.layer2(self.layer1(self.stem(x))))
        features = h.mean(dim=(2, 3))
        logits = self.classifier(features)
        return (logits, features) if return_features else logits
