"""Small networks for federated experiments (no running statistics, so clients vmap cleanly)."""

from .nets import MLP, LogisticRegression, SmallCNN

__all__ = ["MLP", "LogisticRegression", "SmallCNN"]
