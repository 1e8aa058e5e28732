"""Graph recommendation (NLGCL and baselines): device-side training and full-sort evaluation."""

from runner.methods.recsys.early_stopping import WarmupEarlyStopping
from runner.methods.recsys.module import RecommenderModule
from runner.models.recsys.losses import bpr_loss, emb_loss, info_nce

__all__ = ["RecommenderModule", "WarmupEarlyStopping", "bpr_loss", "emb_loss", "info_nce"]
