"""CCD — collaborative contrastive decoding against fawning hallucinations (arXiv 2509.00869;
card: shared/papers/ccd.md): decoding strategies, the evaluation module and the in-project LM."""

from .decoding import (
    ContrastiveDecoding,
    Decoder,
    Greedy,
    Sampling,
    contrastive_scores,
    generate,
    score_labels,
)
from .lm_training import LMTraining, trained_twin_lm, warmup_cosine
from .module import FawningEvaluation

__all__ = [
    "ContrastiveDecoding",
    "Decoder",
    "FawningEvaluation",
    "Greedy",
    "LMTraining",
    "Sampling",
    "contrastive_scores",
    "generate",
    "score_labels",
    "trained_twin_lm",
    "warmup_cosine",
]
