"""Small FL models: logistic regression, an MLP, and a GroupNorm CNN.

The CNN normalises with GroupNorm (no running statistics; the FL engine also supports BatchNorm's,
kept per client: see :mod:`runner.federated.simulator`).

Every model ends in a linear ``classifier`` (the name personalised methods use to keep the head
personal, e.g. FedPer / FedRep: ``personal_parameters: [classifier]``) and takes
``forward(x, return_features=True)`` → ``(logits, features)``, the classifier's input (prototype and
feature-level methods: FedProto, FedPall, FedSM, MOON).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MLP", "LogisticRegression", "SmallCNN"]


class LogisticRegression(nn.Module):
    """Multinomial logistic regression on flattened inputs (Byrd-SAGA's COVTYPE model)."""

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.classifier = nn.Linear(int(in_features), int(num_classes))

    def forward(self, x: torch.Tensor, return_features: bool = False):
        features = x.flatten(1)
        logits = self.classifier(features)
        return (logits, features) if return_features else logits


class MLP(nn.Module):
    """Fully connected ReLU network on flattened inputs."""

    def __init__(self, in_features: int, num_classes: int, hidden: tuple[int, ...] = (200, 200)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = int(in_features)
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU()]
            width = int(h)
        self.body = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, int(num_classes))

    def forward(self, x: torch.Tensor, return_features: bool = False):
        features = self.body(x.flatten(1))
        logits = self.classifier(features)
        return (logits, features) if return_features else logits


class SmallCNN(nn.Module):
    """Two 5×5 conv blocks (conv → GroupNorm → ReLU → 2×2 max-pool) and a two-layer head, the
    common MNIST FL CNN (McMahan et al. 2017) with GroupNorm added; ``channels=(32, 64)``,
    ``hidden=512`` is that paper's size."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: int = 28,
        channels: tuple[int, int] = (32, 64),
        hidden: int = 512,
        groups: int = 4,
    ) -> None:
        super().__init__()
        c1, c2 = (int(c) for c in channels)
        self.features = nn.Sequential(
            nn.Conv2d(int(in_channels), c1, 5, padding=2),
            nn.GroupNorm(min(groups, c1), c1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=2),
            nn.GroupNorm(min(groups, c2), c2),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        side = int(image_size) // 4
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c2 * side * side, int(hidden)),
            nn.ReLU(),
        )
        self.classifier = nn.Linear(int(hidden), int(num_classes))

    def forward(self, x: torch.Tensor, return_features: bool = False):
        features = self.head(self.features(x))
        logits = self.classifier(features)
        return (logits, features) if return_features else logits
