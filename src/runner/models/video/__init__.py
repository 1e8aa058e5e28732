"""Video classification backbones with a common interface.

Every model takes ``num_classes`` (given by train.py) and an optional local ``checkpoint``,
maps clips ``[B, 3, T, H, W]`` to logits ``[B, num_classes]`` and exposes
``forward_features(x) -> [B, feature_dim]``, ``classify(features) -> logits`` and
``feature_dim`` so that ``forward(x) == classify(forward_features(x))``.
"""

from runner.models.checkpoint import load_local_weights
from runner.models.video.frame2d import (
    FrameTimmNet,
    TemporalShiftConv2d,
    insert_temporal_shift,
    temporal_shift,
)
from runner.models.video.torchvision_video import TORCHVISION_VIDEO_ARCHS, TorchvisionVideoNet
from runner.models.video.x3d import X3D, X3D_INPUTS

__all__ = [
    "FrameTimmNet",
    "TORCHVISION_VIDEO_ARCHS",
    "TemporalShiftConv2d",
    "TorchvisionVideoNet",
    "X3D",
    "X3D_INPUTS",
    "insert_temporal_shift",
    "load_local_weights",
    "temporal_shift",
]
