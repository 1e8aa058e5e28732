"""MGHFT (arXiv 2507.18929): multi-view sticker emotion recognition with a hierarchical fusion
transformer, its baselines and ablations (card: shared/papers/mghft.md)."""

from runner.methods.mghft.baselines import (
    CLIPLinearProbe,
    LateFusion,
    MajorityClass,
    TextOnlyMLP,
    VisualOnlyPVT,
)
from runner.methods.mghft.fusion import TextGuidedFusionBlock
from runner.methods.mghft.losses import (
    similarity_structure,
    stage_alignment_loss,
    structure_kl,
    symmetric_info_nce,
)
from runner.methods.mghft.module import MGHFT, StickerClassifier

__all__ = [
    "MGHFT",
    "CLIPLinearProbe",
    "LateFusion",
    "MajorityClass",
    "StickerClassifier",
    "TextGuidedFusionBlock",
    "TextOnlyMLP",
    "VisualOnlyPVT",
    "similarity_structure",
    "stage_alignment_loss",
    "structure_kl",
    "symmetric_info_nce",
]
