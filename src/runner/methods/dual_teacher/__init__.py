"""Dual-teacher knowledge distillation for video (card: /shared/papers/dual_teacher.md)."""

from .datw import DATW, MeanFusion
from .module import DualTeacherDistillation
from .tiny_vit import TinyVideoTransformer

__all__ = ["DATW", "MeanFusion", "DualTeacherDistillation", "TinyVideoTransformer"]
