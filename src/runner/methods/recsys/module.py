"""Training and full-sort evaluation of a recommender on the device (NLGCL card, "Performance").

* Training: each epoch draws a permutation of the training interactions on the device; a batch
  ``{"start", "end"}`` from :class:`runner.data.recsys.RecsysDataModule` selects a slice of it, the
  (user, positive) pairs are gathered on the device and one uniform negative per positive is drawn
  on the device among the items the user has *not* trained on, exactly (RecBole's uniform sampler;
  :class:`runner.data.recsys.negatives.ExactNegativeSampler`: a rank among the user's candidates
  mapped to an item by one ``searchsorted``) -- no rejection loop, no per-sample Python loop, no
  host sync.
* Loss: the recommender's named terms (BPR, reg, contrastive ones), summed; each term is logged.
* Evaluation (val each epoch, test at the end): the final embeddings are computed once, then per
  chunk of users ``scores = U[chunk] @ I.T`` → training items (+ validation items for test) set to
  ``-inf`` → ``topk(max k)`` → hits against the held-out items → Recall / NDCG @ {10, 20, 50}
  accumulated on the device (:class:`runner.metrics.RankingMetrics`), one host read at epoch end.
* ``time/epoch_s``: wall seconds of each training epoch (one device sync per epoch).
* Exact resume: the epoch's permutation is a function of ``(seed, epoch)`` and each batch's negatives
  of ``(seed, epoch, batch start)`` alone (a private generator on the device, re-seeded; no host
  sync), never of the global RNG. Measured cause of the old mismatch (1 epoch + resume != 2 straight):
  both were drawn from the global torch RNG, which is restored from the checkpoint, but in the first
  epoch of a fit Lightning creates the training iterator *before* ``on_train_epoch_start`` while in
  later epochs it creates it after -- and creating a DataLoader iterator draws its base seed from the
  global RNG, so a resumed run's permutation and negatives came from a shifted stream. The
  datamodule's loaders also get a private generator (:func:`runner.data.loading.loader_generator`),
  so the global stream the models themselves draw from (SGL views, SimGCL noise, NCL k-means) lines
  up on resume too.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import lightning as L
import torch

from runner.data.recsys.negatives import ExactNegativeSampler
from runner.metrics.ranking import RankingMetrics, topk_hits

__all__ = ["RecommenderModule"]


class _Part:
    """One split part on a device: users / items sorted by user, and CPU row pointers per user."""

    def __init__(self, pairs: torch.Tensor, num_users: int, device: torch.device):
        self.users = pairs[0].to(device)
        self.items = pairs[1].to(device)
        counts = torch.bincount(pairs[0], minlength=num_users)
        self.rowptr = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(counts, 0)]).tolist()
        self.counts = counts.to(device)

    def rows(self, start: int, end: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(row within the chunk, item) of every interaction of users ``start..end-1``."""
        lo, hi = self.rowptr[start], self.rowptr[end]
        return self.users[lo:hi] - start, self.items[lo:hi]


class RecommenderModule(L.LightningModule):
    """Trains ``net`` (a :class:`runner.models.recsys.Recommender`) with BPR + its own terms.

    Needs a datamodule exposing ``split`` (:class:`runner.data.recsys.RecsysSplit`).

    Args:
        net: the recommender.
        num_users, num_items: sizes (from the datamodule).
        optimizer: partial optimizer constructor (card: Adam, lr 5e-4).
        topks: cut-offs of Recall / NDCG.
        mask_validation_in_test: also exclude validation items from the test ranking (RecBole).
        seed: the run seed; the shuffled order and the negatives are functions of it, the epoch and
            the batch (module docstring: exact resume).
    """

    def __init__(
        self,
        net: torch.nn.Module,
        num_users: int,
        num_items: int,
        optimizer: Callable[..., torch.optim.Optimizer] | None = None,
        topks: Sequence[int] = (10, 20, 50),
        mask_validation_in_test: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(
            {
                "num_users": int(num_users),
                "num_items": int(num_items),
                "topks": [int(k) for k in topks],
                "mask_validation_in_test": bool(mask_validation_in_test),
            }
        )
        self.net = net
        self.num_users = int(num_users)
        self.num_items = int(num_items)
        self.optimizer_factory = optimizer
        self.topks = tuple(int(k) for k in topks)
        self.mask_validation_in_test = bool(mask_validation_in_test)
        self.seed = int(seed)
        self._rng: torch.Generator | None = None
        self.val_metrics = RankingMetrics(self.topks)
        self.test_metrics = RankingMetrics(self.topks)
        self._parts: dict[str, _Part] = {}
        self._parts_device: torch.device | None = None
        self._perm: torch.Tensor | None = None
        self._eval_embeddings: tuple[torch.Tensor, torch.Tensor] | None = None
        self._epoch_started = 0.0

    # ---- data on the device -------------------------------------------------------------------
    def _part(self, name: str) -> _Part:
        if self._parts_device != self.device:
            split = self.trainer.datamodule.split
            self._parts = {n: _Part(p, self.num_users, self.device) for n, p in split.parts.items()}
            train = self._parts["train"]
            self._negatives = ExactNegativeSampler(train.users, train.items, self.num_users, self.num_items)
            self._parts_device = self.device
        return self._parts[name]

    def seeded_generator(self, *key: int) -> torch.Generator:
        """The module's generator on its device, re-seeded from ``(seed, *key)`` alone."""
        if self._rng is None or self._rng.device != self.device:
            self._rng = torch.Generator(device=self.device)
        digest = hashlib.blake2b(repr((self.seed, *key)).encode(), digest_size=8).digest()
        return self._rng.manual_seed(int.from_bytes(digest, "little") >> 1)

    def sample_negatives(self, users: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """One item per user, uniform over the items that are not among the user's training items."""
        self._part("train")
        return self._negatives.sample(users, generator)

    # ---- training -------------------------------------------------------------------------------
    def configure_optimizers(self):
        params = [p for p in self.net.parameters() if p.requires_grad]
        if not params or self.optimizer_factory is None:
            return None  # MostPop: nothing to learn
        return self.optimizer_factory(params)

    def on_train_epoch_start(self) -> None:
        train = self._part("train")
        generator = self.seeded_generator(self.current_epoch)
        self._perm = torch.randperm(train.users.numel(), device=self.device, generator=generator)
        self.net.on_train_epoch_start(self.current_epoch)
        self._epoch_started = time.perf_counter()

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any] | None:
        train = self._part("train")
        start = int(batch["start"])
        index = self._perm[start : int(batch["end"])]
        users, pos_items = train.users[index], train.items[index]
        neg_items = self.sample_negatives(users, self.seeded_generator(self.current_epoch, start))
        terms = self.net.loss_terms(users, pos_items, neg_items, epoch=self.current_epoch)
        if not terms:
            return None
        loss = torch.stack(list(terms.values())).sum()
        size = users.numel()
        self.log(
            "train/loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=size, sync_dist=True
        )
        for name, value in terms.items():
            self.log(f"train/{name}", value, on_step=False, on_epoch=True, batch_size=size, sync_dist=True)
        return {"loss": loss, "loss_terms": {name: value.detach() for name, value in terms.items()}}

    def on_train_epoch_end(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.log("time/epoch_s", time.perf_counter() - self._epoch_started, on_epoch=True, sync_dist=True)

    # ---- full-sort evaluation ---------------------------------------------------------------------
    @torch.no_grad()
    def _start_eval(self) -> None:
        users, items = self.net.final_embeddings()
        self._eval_embeddings = (users.detach(), items.detach())

    def on_validation_epoch_start(self) -> None:
        self._start_eval()

    def on_test_epoch_start(self) -> None:
        self._start_eval()

    @torch.no_grad()
    def _evaluate_chunk(self, batch: dict[str, Any], target: str, masked: Sequence[str], metrics) -> None:
        start, end = int(batch["start"]), int(batch["end"])
        user_emb, item_emb = self._eval_embeddings
        scores = user_emb[start:end] @ item_emb.T
        for name in masked:
            rows, cols = self._part(name).rows(start, end)
            scores[rows, cols] = float("-inf")
        rows, cols = self._part(target).rows(start, end)
        relevant = torch.zeros_like(scores, dtype=torch.bool)
        relevant[rows, cols] = True
        metrics.update(topk_hits(scores, relevant, max(self.topks)), self._part(target).counts[start:end])

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate_chunk(batch, "val", ("train",), self.val_metrics)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        masked = ("train", "val") if self.mask_validation_in_test else ("train",)
        self._evaluate_chunk(batch, "test", masked, self.test_metrics)

    def _finish_eval(self, prefix: str, metrics: RankingMetrics) -> None:
        values = metrics.compute()
        self.log_dict({f"{prefix}/{k}": v for k, v in values.items()}, prog_bar=False, sync_dist=True)
        metrics.reset()
        self._eval_embeddings = None

    def on_validation_epoch_end(self) -> None:
        self._finish_eval("val", self.val_metrics)

    def on_test_epoch_end(self) -> None:
        self._finish_eval("test", self.test_metrics)
