"""Supervised video classification (cross-entropy), the base of the video experiments."""

from runner.methods.video_supervised.module import VideoClassificationModule, VideoClassifier

__all__ = ["VideoClassificationModule", "VideoClassifier"]
