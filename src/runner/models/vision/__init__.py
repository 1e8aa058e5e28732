"""Image backbones written here: PVT v1 with per-stage CLS tokens and Local Re-Attention (MGHFT)."""

from runner.models.vision.local_reattention import (
    gather_tokens,
    local_reattention_indices,
    rollout_cls_row,
    spread_to_patches,
    top_k_per_head,
)
from runner.models.vision.pvt import PyramidVisionTransformer, StageOutput

__all__ = [
    "PyramidVisionTransformer",
    "StageOutput",
    "gather_tokens",
    "local_reattention_indices",
    "rollout_cls_row",
    "spread_to_patches",
    "top_k_per_head",
]
