"""Early stopping after a warm-up (NLGCL card: stop on valid NDCG@10, patience 10, after 30 epochs)."""

from __future__ import annotations

from lightning.pytorch.callbacks import EarlyStopping

__all__ = ["WarmupEarlyStopping"]


class WarmupEarlyStopping(EarlyStopping):
    """Lightning's :class:`EarlyStopping` that ignores the first ``warmup_epochs`` epochs: neither the
    best score nor the patience counter is touched before then."""

    def __init__(self, *args, warmup_epochs: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.warmup_epochs = int(warmup_epochs)

    def _run_early_stopping_check(self, trainer) -> None:
        if trainer.current_epoch < self.warmup_epochs:
            return
        super()._run_early_stopping_check(trainer)
