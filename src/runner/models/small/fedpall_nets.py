"""FedPall's network (card ``fedpall.md``, read from DistriAI/FedPall ``exps/models.py``): a feature
extractor, a classifier MLP and a discriminator ("amplifier") MLP over the extractor's features.

* ``extractor`` — a bottleneck ResNet (:class:`BottleneckResNet`; the defaults are ResNet-50, trained
  from scratch, 2048-d features as in the paper; the twins use the same architecture with fewer and
  narrower blocks);
* ``classifier`` — ``d → hidden (BN) → hidden (BN) → C`` (official ``fc4 bn4 fc5 bn5 fc6``);
* ``discriminator`` — ``d → hidden (BN) → hidden (BN) → K`` without biases, K = number of clients.

``forward(x)`` gives the logits; ``return_features=True`` gives ``(logits, h)``; ``discriminate=True``
gives ``(logits, h, D(h))``. Every normalisation layer is a BatchNorm with running statistics, as in
the official code (the FL engine keeps them per client and evaluates in eval mode:
:mod:`runner.federated.simulator`), and its module name contains ``bn``, so ``personal_parameters:
[bn]`` is FedBN (parameters and statistics) and ``classifier.bn`` names the classifier's BN layers that
FedPall keeps personal.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["BottleneckResNet", "ConvExtractor", "FedPallNet"]


def _bn2d(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels)


def _bn1d(features: int) -> nn.BatchNorm1d:
    return nn.BatchNorm1d(features)


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck: 1×1 → 3×3 (stride) → 1×1 (×expansion), identity or projection shortcut."""

    def __init__(self, in_channels: int, width: int, stride: int, expansion: int) -> None:
        super().__init__()
        out = width * expansion
        self.conv1 = nn.Conv2d(in_channels, width, 1, bias=False)
        self.bn1 = _bn2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = _bn2d(width)
        self.conv3 = nn.Conv2d(width, out, 1, bias=False)
        self.bn3 = _bn2d(out)
        self.relu = nn.ReLU()
        self.shortcut = None
        if stride != 1 or in_channels != out:
            self.shortcut = nn.Sequential(
                OrderedDict(conv=nn.Conv2d(in_channels, out, 1, stride=stride, bias=False), bn=_bn2d(out))
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + (x if self.shortcut is None else self.shortcut(x)))


class BottleneckResNet(nn.Module):
    """A bottleneck ResNet trunk ending in global average pooling (``fc`` removed, as in FedPall's
    ``resnet50(weights=None)`` with ``fc = Identity``). Defaults: ResNet-50 (stem 7×7/2 + 3×3 max-pool,
    blocks ``(3, 4, 6, 3)``, widths ``(64, 128, 256, 512)``, expansion 4 → 2048 features).

    ``out_features`` is the feature dimension (``widths[-1] × expansion``)."""

    def __init__(
        self,
        in_channels: int = 3,
        widths: Sequence[int] = (64, 128, 256, 512),
        blocks: Sequence[int] = (3, 4, 6, 3),
        expansion: int = 4,
        stem_width: int | None = None,
    ) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        blocks = [int(b) for b in blocks]
        if len(widths) != len(blocks) or not widths:
            raise ValueError("model.extractor: widths and blocks need the same, non-zero length")
        stem = int(stem_width or widths[0])
        self.stem = nn.Sequential(
            OrderedDict(
                conv=nn.Conv2d(int(in_channels), stem, 7, stride=2, padding=3, bias=False),
                bn=_bn2d(stem),
                relu=nn.ReLU(),
                pool=nn.MaxPool2d(3, stride=2, padding=1),
            )
        )
        layers = []
        channels = stem
        for stage, (width, count) in enumerate(zip(widths, blocks, strict=True)):
            for b in range(count):
                stride = 2 if (stage > 0 and b == 0) else 1
                layers.append(Bottleneck(channels, width, stride, int(expansion)))
                channels = width * int(expansion)
        self.layers = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_features = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(self.layers(self.stem(x))).flatten(1)


class ConvExtractor(nn.Module):
    """FedBN's Digits-5 CNN trunk (Li et al. 2021, ``DigitModel``): 5×5 convolutions with BatchNorm,
    ReLU and 2×2 max-pooling after all but the last, then a fully connected layer with BatchNorm and
    ReLU; ``channels=(64, 64, 128)``, ``out_features=2048`` is FedBN's size. The CPU twins use it
    narrow (``out_features`` is the feature dimension)."""

    def __init__(
        self,
        in_channels: int = 3,
        image_size: int = 28,
        channels: Sequence[int] = (64, 64, 128),
        out_features: int = 2048,
    ) -> None:
        super().__init__()
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        width, side = int(in_channels), int(image_size)
        for i, c in enumerate(int(c) for c in channels):
            layers[f"conv{i + 1}"] = nn.Conv2d(width, c, 5, padding=2)
            layers[f"bn{i + 1}"] = _bn2d(c)
            layers[f"relu{i + 1}"] = nn.ReLU()
            if i < len(channels) - 1:
                layers[f"pool{i + 1}"] = nn.MaxPool2d(2)
                side //= 2
            width = c
        self.convs = nn.Sequential(layers)
        self.fc = nn.Sequential(
            OrderedDict(
                fc=nn.Linear(width * side * side, int(out_features)),
                bn=_bn1d(int(out_features)),
                relu=nn.ReLU(),
            )
        )
        self.out_features = int(out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.convs(x).flatten(1))


def _mlp(in_features: int, hidden: int, out: int, bias: bool) -> nn.Sequential:
    return nn.Sequential(
        OrderedDict(
            fc1=nn.Linear(in_features, hidden, bias=bias),
            bn1=_bn1d(hidden),
            relu1=nn.ReLU(),
            fc2=nn.Linear(hidden, hidden, bias=bias),
            bn2=_bn1d(hidden),
            relu2=nn.ReLU(),
            fc3=nn.Linear(hidden, out, bias=bias),
        )
    )


class FedPallNet(nn.Module):
    """Extractor + classifier MLP + discriminator MLP (module docstring).

    Args:
        extractor: a module mapping images to ``[B, out_features]`` (has ``out_features``).
        num_classes: classes C.
        num_domains: discriminator outputs K (the number of clients).
        hidden: classifier width (512 in the paper).
        discriminator_hidden: discriminator width (512 in the paper).
    """

    def __init__(
        self,
        extractor: nn.Module,
        num_classes: int,
        num_domains: int,
        hidden: int = 512,
        discriminator_hidden: int = 512,
    ) -> None:
        super().__init__()
        self.extractor = extractor
        features = int(extractor.out_features)
        self.feature_dim = features
        self.classifier = _mlp(features, int(hidden), int(num_classes), bias=True)
        self.discriminator = _mlp(features, int(discriminator_hidden), int(num_domains), bias=False)

    def forward(self, x: torch.Tensor, return_features: bool = False, discriminate: bool = False):
        h = self.extractor(x)
        logits = self.classifier(h)
        if discriminate:
            return logits, h, self.discriminator(h)
        return (logits, h) if return_features else logits
