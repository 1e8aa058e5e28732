"""Recommendation data: RecBole atomic / LightGCN readers, filters, per-user split, synthetic twin."""

from runner.data.recsys.datamodule import RangeBatches, RankRangeBatches, RecsysDataModule, RecsysSplit
from runner.data.recsys.readers import (
    Interactions,
    filter_by_rating,
    k_core_filter,
    read_atomic_inter,
    read_lightgcn_txt,
    split_per_user,
)
from runner.data.recsys.synthetic import RecsysTwin

__all__ = [
    "Interactions",
    "RangeBatches",
    "RankRangeBatches",
    "RecsysDataModule",
    "RecsysSplit",
    "RecsysTwin",
    "filter_by_rating",
    "k_core_filter",
    "read_atomic_inter",
    "read_lightgcn_txt",
    "split_per_user",
]
