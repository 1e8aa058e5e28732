"""Supervised video classification (cross-entropy), the base of the video experiments."""

from runner.methods.video_supervised.module import VideoClassifier

__all__ = ["VideoClassifier"]
