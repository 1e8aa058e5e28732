"""Byrd-NAFL: Byzantine-resilient Nesterov-accelerated federated learning (arXiv 2511.02657)."""

from .optim import LookaheadNesterov
from .strategy import ACCELERATIONS, ByrdNAFL

__all__ = ["ACCELERATIONS", "ByrdNAFL", "LookaheadNesterov"]
