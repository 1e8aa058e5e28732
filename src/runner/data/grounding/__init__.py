"""Temporal grounding on precomputed clip features: QVHighlights(-Unify) readers, anchor labels,
the synthetic twin and the data module (OVG-HQ card, ``ovg_hq.md``)."""

from runner.data.grounding.anchors import anchor_labels, cached_anchor_labels
from runner.data.grounding.datamodule import QUERY_MODALITIES, VISUAL_QUERIES, QVHighlightsDataModule
from runner.data.grounding.readers import (
    BadFeatureFile,
    GroundingRecord,
    load_feature_array,
    read_annotations,
)
from runner.data.grounding.twin import QVHighlightsTwin

__all__ = [
    "BadFeatureFile",
    "GroundingRecord",
    "QUERY_MODALITIES",
    "QVHighlightsDataModule",
    "QVHighlightsTwin",
    "VISUAL_QUERIES",
    "anchor_labels",
    "cached_anchor_labels",
    "load_feature_array",
    "read_annotations",
]
