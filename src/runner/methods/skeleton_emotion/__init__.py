"""Skeleton-based emotion recognition (survey arXiv 2507.18026): one benchmark over the survey's
paradigms — Traditional (scikit-learn on affective features), Feat2Net (MLP, LSTM), FeatFusionNet
(hybrid STEP) and End2EndNet (ST-GCN, ST-GCN++) — plus a majority-class baseline, all evaluated the
same way (:mod:`runner.methods.skeleton_emotion.evaluation`)."""

from runner.methods.skeleton_emotion.classical import SklearnEmotionClassifier
from runner.methods.skeleton_emotion.module import NeuralEmotionClassifier
from runner.methods.skeleton_emotion.schedules import cosine_over_epochs, multistep_at_fractions

__all__ = [
    "NeuralEmotionClassifier",
    "SklearnEmotionClassifier",
    "cosine_over_epochs",
    "multistep_at_fractions",
]
