"""A small video transformer: the ViT teacher on the CPU-sized twin (a size override of MViTv2-S).

MViTv2-S needs 16×224×224 clips (fixed positional embeddings) and is far too slow for 2 CPU cores;
on the twin's 8×56×56 clips the heterogeneous teacher is this ViViT-style transformer instead
(Arnab et al. 2021, "spatio-temporal attention" model 1): tubelet embedding (a Conv3d with
stride = kernel), learnt positional embeddings, pre-norm transformer encoder layers with joint
space-time self-attention, mean-pooled tokens → LayerNorm → ``forward_features``. It is still a
transformer (global attention, no convolutional inductive bias beyond the patch embedding), which
is what the dual-teacher method's "heterogeneous teacher" requires.
"""

from __future__ import annotations

import torch
from torch import nn

from runner.models.checkpoint import load_local_weights


class TinyVideoTransformer(nn.Module):
    """ViViT-style encoder for clips ``[B, 3, T, H, W]`` with the runner's backbone interface.

    Args:
        num_classes: classifier outputs (given by the method / train.py).
        num_frames, crop_size: the clip the positional embedding is sized for (other sizes are
            handled by interpolating it).
        tubelet: ``(t, h, w)`` patch size.
        dim, depth, heads, mlp_ratio: transformer size.
        dropout: before the classifier.
        checkpoint: optional local weight file.
    """

    _head_prefixes = ("classifier.",)

    def __init__(
        self,
        num_classes: int,
        num_frames: int = 8,
        crop_size: int = 56,
        tubelet: tuple[int, int, int] = (2, 8, 8),
        dim: int = 96,
        depth: int = 4,
        heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.1,
        checkpoint: str | None = None,
    ):
        super().__init__()
        tubelet = tuple(int(v) for v in tubelet)
        self.tubelet = tubelet
        self.patch_embed = nn.Conv3d(3, dim, kernel_size=tubelet, stride=tubelet)
        self.grid = (
            max(num_frames // tubelet[0], 1),
            max(crop_size // tubelet[1], 1),
            max(crop_size // tubelet[2], 1),
        )
        self.pos_embed = nn.Parameter(torch.zeros(1, dim, *self.grid))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        layer = nn.TransformerEncoderLayer(
            dim,
            heads,
            int(dim * mlp_ratio),
            dropout=0.0,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(dim, num_classes)
        self.feature_dim = dim
        if checkpoint:
            load_local_weights(self, checkpoint)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x)
        pos = self.pos_embed
        if tokens.shape[2:] != pos.shape[2:]:
            pos = nn.functional.interpolate(pos, size=tokens.shape[2:], mode="trilinear", align_corners=False)
        tokens = (tokens + pos).flatten(2).transpose(1, 2)
        return self.norm(self.encoder(tokens).mean(dim=1))

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.forward_features(x))
