"""Metrics torchmetrics lacks (design.md: "metrics/ only what torchmetrics lacks")."""

from runner.metrics.ranking import RankingMetrics, ranking_metrics_per_user, topk_hits

__all__ = ["RankingMetrics", "ranking_metrics_per_user", "topk_hits"]
