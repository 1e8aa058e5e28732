"""Full-sort evaluation on the device: against a brute-force per-user loop and torchmetrics;
negative sampling; early stopping after a warm-up; training on a tiny twin."""

from __future__ import annotations

import math
import warnings

import lightning as L
import numpy as np
import pytest
import torch
from torchmetrics.retrieval import RetrievalNormalizedDCG, RetrievalRecall

from runner.data.recsys import RecsysDataModule, RecsysTwin
from runner.methods.recsys import RecommenderModule, WarmupEarlyStopping
from runner.metrics.ranking import RankingMetrics, ranking_metrics_per_user, topk_hits
from runner.models.recsys import BPRMF, LightGCN, MostPop

warnings.filterwarnings("ignore", ".*does not have many workers.*")


def brute_force(scores: np.ndarray, relevant: list[set], masked: list[set], k: int) -> tuple[float, float]:
    """Mean Recall@k / NDCG@k over users with relevant items, one user at a time."""
    recalls, ndcgs = [], []
    for u in range(scores.shape[0]):
        if not relevant[u]:
            continue
        ranked = [i for i in np.argsort(-scores[u], kind="stable") if i not in masked[u]][:k]
        hits = [1.0 if i in relevant[u] else 0.0 for i in ranked]
        recalls.append(sum(hits) / len(relevant[u]))
        dcg = sum(h / math.log2(j + 2) for j, h in enumerate(hits))
        idcg = sum(1 / math.log2(j + 2) for j in range(min(len(relevant[u]), k)))
        ndcgs.append(dcg / idcg)
    return float(np.mean(recalls)), float(np.mean(ndcgs))


def test_ranking_metrics_match_torchmetrics_retrieval():
    torch.manual_seed(0)
    n_users, n_items = 9, 30
    scores = torch.randn(n_users, n_items)
    relevant = torch.rand(n_users, n_items) < 0.15
    relevant[0] = False  # a user without relevant items is not counted
    metric = RankingMetrics((5, 10))
    metric.update(topk_hits(scores, relevant, 10), relevant.sum(1))
    ours = metric.compute()
    counted = relevant.sum(1) > 0
    indexes = torch.arange(n_users)[:, None].expand(-1, n_items)[counted].reshape(-1)
    preds, target = scores[counted].reshape(-1), relevant[counted].reshape(-1)
    for k in (5, 10):
        recall = RetrievalRecall(top_k=k)(preds, target, indexes=indexes)
        ndcg = RetrievalNormalizedDCG(top_k=k)(preds, target, indexes=indexes)
        assert ours[f"recall@{k}"].item() == pytest.approx(recall.item(), abs=1e-6)
        assert ours[f"ndcg@{k}"].item() == pytest.approx(ndcg.item(), abs=1e-6)


def test_per_user_metrics_by_hand():
    hits = torch.tensor([[True, False, True], [False, False, False]])
    values = ranking_metrics_per_user(hits, torch.tensor([4, 1]), [2, 3])
    assert values["recall@2"].tolist() == pytest.approx([0.25, 0.0])
    assert values["recall@3"].tolist() == pytest.approx([0.5, 0.0])
    idcg3 = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert values["ndcg@3"][0].item() == pytest.approx((1 + 1 / math.log2(4)) / idcg3)


@pytest.fixture(scope="module")
def tiny_dm(tmp_path_factory):
    root = tmp_path_factory.mktemp("twin")
    twin = RecsysTwin(
        "toy", num_users=70, num_items=45, num_communities=4, interactions_per_user=12, min_interactions=5
    )
    return RecsysDataModule(
        "toy", synthetic=True, synthetic_root=str(root), twin=twin, twin_batch_size=64, eval_batch_users=16
    )


def quiet_trainer(**kwargs) -> L.Trainer:
    defaults = dict(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    return L.Trainer(**{**defaults, **kwargs})


@pytest.mark.parametrize("stage", ["validate", "test"])
def test_chunked_device_evaluation_matches_brute_force(tiny_dm, stage):
    torch.manual_seed(0)
    net = BPRMF(tiny_dm.num_users, tiny_dm.num_items, embedding_size=8)
    module = RecommenderModule(net, tiny_dm.num_users, tiny_dm.num_items, topks=(5, 10, 20))
    results = getattr(quiet_trainer(), stage)(module, datamodule=tiny_dm, verbose=False)[0]
    scores = (net.user_embedding.weight @ net.item_embedding.weight.T).detach().numpy()

    def sets(pairs):
        out = [set() for _ in range(tiny_dm.num_users)]
        for u, i in pairs.T.tolist():
            out[u].add(i)
        return out

    train, val, test = sets(tiny_dm.split.train), sets(tiny_dm.split.val), sets(tiny_dm.split.test)
    if stage == "validate":
        relevant, masked, prefix = val, train, "val"
    else:
        relevant, masked, prefix = test, [a | b for a, b in zip(train, val, strict=True)], "test"
    for k in (5, 10, 20):
        recall, ndcg = brute_force(scores, relevant, masked, k)
        assert results[f"{prefix}/recall@{k}"] == pytest.approx(recall, abs=1e-5)
        assert results[f"{prefix}/ndcg@{k}"] == pytest.approx(ndcg, abs=1e-5)


def test_negatives_avoid_training_items_exactly(tiny_dm):
    module = RecommenderModule(MostPop(**tiny_dm.network_kwargs()), tiny_dm.num_users, tiny_dm.num_items)
    module.trainer = quiet_trainer()
    module.trainer.datamodule = tiny_dm
    train = module._part("train")
    torch.manual_seed(0)
    users = train.users.repeat(20)
    negatives = module.sample_negatives(users)
    seen = set(zip(train.users.tolist(), train.items.tolist(), strict=True))
    clashes = sum((u, i) in seen for u, i in zip(users.tolist(), negatives.tolist(), strict=True))
    assert clashes == 0  # never a training item of the user (no redraw budget to run out of)
    assert int(negatives.min()) >= 0 and int(negatives.max()) < tiny_dm.num_items


def test_early_stopping_waits_for_the_warm_up(tiny_dm):
    # MostPop's validation NDCG never changes: with patience 1 the run stops right after the warm-up
    def epochs_run(warmup: int) -> int:
        net = MostPop(**tiny_dm.network_kwargs())
        module = RecommenderModule(net, tiny_dm.num_users, tiny_dm.num_items)
        stopper = WarmupEarlyStopping(monitor="val/ndcg@10", mode="max", patience=1, warmup_epochs=warmup)
        trainer = quiet_trainer(max_epochs=20, callbacks=[stopper], limit_train_batches=1)
        trainer.fit(module, datamodule=tiny_dm)
        return trainer.current_epoch

    assert epochs_run(0) == 2
    assert epochs_run(5) == 7


def test_lightgcn_learns_beyond_popularity(tiny_dm):
    torch.manual_seed(0)
    net = LightGCN(**tiny_dm.network_kwargs(), embedding_size=16)
    module = RecommenderModule(
        net, tiny_dm.num_users, tiny_dm.num_items, optimizer=lambda p: torch.optim.Adam(p, 1e-2)
    )
    trainer = quiet_trainer(max_epochs=25)
    trainer.fit(module, datamodule=tiny_dm)
    learned = trainer.validate(module, datamodule=tiny_dm, verbose=False)[0]["val/ndcg@20"]
    pop = RecommenderModule(MostPop(**tiny_dm.network_kwargs()), tiny_dm.num_users, tiny_dm.num_items)
    baseline = quiet_trainer().validate(pop, datamodule=tiny_dm, verbose=False)[0]["val/ndcg@20"]
    assert learned > 1.2 * baseline
