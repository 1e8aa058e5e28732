"""SDD (Structure Discrepancy-Aware Distillation) parts: projectors, residual target, SDB.

Card, "Confirmed": residual target ``f_res = φ_vit(f_vit) − φ_cnn(f_cnn)``, learnt by the student
through a lightweight auxiliary branch (SDB) used in training only and removed at inference;
secondary sources describe the SDB as a small non-local block + squeeze-excitation.

Reconstruction choices (documented config switches):

* the projectors φ are linear maps of the teachers' pooled features to ``proj_dim``. With the
  target carrying no gradient (``train_projectors=false``, default) they are fixed random
  orthogonal maps: training them on this MSE alone would let both collapse to 0 (a trivial target).
  ``train_projectors=true`` lets gradients reach φ (with the collapse risk; an ablation switch).
* the SDB reads a feature map of the student (a forward hook on ``feature_module``, e.g. X3D's
  ``conv5`` output ``[B, C, T, H, W]``): 1×1×1 reduction → non-local block (embedded Gaussian,
  Wang et al. 2018) over the T·H·W positions → squeeze-excitation → global average pool → linear
  to ``proj_dim``. Gradients flow through the hook into the student backbone.
"""

from __future__ import annotations

import torch
from torch import nn


class NonLocal3d(nn.Module):
    """Embedded-Gaussian non-local block with a residual connection (Wang et al., CVPR 2018)."""

    def __init__(self, channels: int, inner: int | None = None):
        super().__init__()
        inner = inner or max(channels // 2, 1)
        self.theta = nn.Conv3d(channels, inner, 1)
        self.phi = nn.Conv3d(channels, inner, 1)
        self.g = nn.Conv3d(channels, inner, 1)
        self.out = nn.Conv3d(inner, channels, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = x.shape
        q = self.theta(x).flatten(2).transpose(1, 2)  # [B, N, I]
        k = self.phi(x).flatten(2)  # [B, I, N]
        v = self.g(x).flatten(2).transpose(1, 2)  # [B, N, I]
        attn = torch.softmax(q @ k, dim=-1)
        y = (attn @ v).transpose(1, 2).reshape(b, -1, t, h, w)
        return x + self.out(y)


class SqueezeExcite(nn.Module):
    """Channel gating ``x · σ(W2 ReLU(W1 avgpool(x)))`` (Hu et al., CVPR 2018)."""

    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(channels // reduction, 4)
        self.fc = nn.Sequential(
            nn.Linear(channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, channels), nn.Sigmoid()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.fc(x.mean(dim=(2, 3, 4)))
        return x * gate[:, :, None, None, None]


class StructureDiscrepancyBranch(nn.Module):
    """SDB: student feature map ``[B, C, T, H, W]`` (or pooled ``[B, C]``) → predicted residual ``[B, D]``."""

    def __init__(
        self, in_channels: int, out_dim: int, width: int = 64, non_local: bool = True, se: bool = True
    ):
        super().__init__()
        self.reduce = nn.Sequential(
            nn.Conv3d(in_channels, width, 1, bias=False), nn.BatchNorm3d(width), nn.ReLU()
        )
        self.non_local = NonLocal3d(width) if non_local else nn.Identity()
        self.se = SqueezeExcite(width) if se else nn.Identity()
        self.head = nn.Linear(width, out_dim)

    def forward(self, feature_map: torch.Tensor) -> torch.Tensor:
        x = feature_map
        if x.dim() == 2:
            x = x[:, :, None, None, None]
        x = self.se(self.non_local(self.reduce(x)))
        return self.head(x.mean(dim=(2, 3, 4)))


class ResidualTarget(nn.Module):
    """``f_res = φ_vit(f_vit) − φ_cnn(f_cnn)`` with linear projectors to ``proj_dim``."""

    def __init__(self, vit_dim: int, cnn_dim: int, proj_dim: int, trainable: bool = False, seed: int = 0):
        super().__init__()
        self.phi_vit = nn.Linear(vit_dim, proj_dim, bias=False)
        self.phi_cnn = nn.Linear(cnn_dim, proj_dim, bias=False)
        generator = torch.Generator().manual_seed(int(seed))
        for layer in (self.phi_vit, self.phi_cnn):
            weight = torch.empty_like(layer.weight)
            # a random orthogonal map (rows or columns orthonormal), seeded so the target is reproducible
            q, _ = torch.linalg.qr(torch.randn(max(weight.shape), min(weight.shape), generator=generator))
            weight.copy_(q if weight.shape[0] >= weight.shape[1] else q.t())
            layer.weight.data.copy_(weight)
            layer.weight.requires_grad_(bool(trainable))
        self.trainable = bool(trainable)

    def forward(self, f_vit: torch.Tensor, f_cnn: torch.Tensor) -> torch.Tensor:
        return self.phi_vit(f_vit.float()) - self.phi_cnn(f_cnn.float())
