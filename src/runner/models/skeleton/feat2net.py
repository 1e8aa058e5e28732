"""Feat2Net networks of the survey's taxonomy (card "Taxonomy"): hand-crafted input → a network.

* :class:`AffectiveMLP` — the 27/29 affective features → MLP (``inputs = ("affective",)``).
* :class:`JointLSTM` — per-frame joint coordinates → LSTM → classifier on the last hidden state
  (``inputs = ("joints",)``; the first person of ``[N, M, T, V, C]``; an input BN over the V·C
  coordinates of a frame plays the role of ST-GCN's data BN).

The survey names these families without fixing sizes; the defaults (two hidden layers of 128 and 64,
an LSTM of two layers × 128) are this project's choice, documented as such.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class AffectiveMLP(nn.Module):
    """Affective features → ``Linear → BN → ReLU → Dropout`` per hidden width → classes."""

    inputs = ("affective",)

    def __init__(
        self, num_classes: int, num_affective: int, hidden: Sequence[int] = (128, 64), dropout: float = 0.2
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = int(num_affective)
        for h in hidden:
            layers += [
                nn.Linear(width, int(h)),
                nn.BatchNorm1d(int(h)),
                nn.ReLU(inplace=True),
                nn.Dropout(dropout),
            ]
            width = int(h)
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, affective: torch.Tensor) -> torch.Tensor:
        return self.net(affective)


class JointLSTM(nn.Module):
    """Joint coordinates per frame → LSTM → last hidden state → classes."""

    inputs = ("joints",)

    def __init__(
        self,
        num_classes: int,
        in_channels: int,
        num_joints: int,
        hidden_size: int = 128,
        num_layers: int = 2,
        dropout: float = 0.2,
        bidirectional: bool = False,
    ) -> None:
        super().__init__()
        features = int(in_channels) * int(num_joints)
        self.input_bn = nn.BatchNorm1d(features)
        self.lstm = nn.LSTM(
            features,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            dropout=dropout if num_layers > 1 else 0.0,
            bidirectional=bidirectional,
        )
        self.head = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(hidden_size * (2 if bidirectional else 1), num_classes)
        )

    def forward(self, joints: torch.Tensor) -> torch.Tensor:
        x = joints[:, 0].flatten(2)  # [N, T, V·C]
        x = self.input_bn(x.transpose(1, 2)).transpose(1, 2)
        _, (hidden, _) = self.lstm(x)
        if self.lstm.bidirectional:
            last = torch.cat([hidden[-2], hidden[-1]], dim=1)
        else:
            last = hidden[-1]
        return self.head(last)
