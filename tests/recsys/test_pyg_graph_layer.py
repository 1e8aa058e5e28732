"""The recommenders' graph layer on torch-geometric: gcn_norm adjacency, LGConv propagation (the
"pyg" switch) against the own symmetric kernel, SGL's dropout_edge views, and PyG's LinkPredNDCG /
LinkPredRecall against runner's RankingMetrics."""

from __future__ import annotations

import pytest
import torch
from torch_geometric.metrics import LinkPredNDCG, LinkPredRecall

from runner.errors import UserError
from runner.metrics.ranking import RankingMetrics, topk_hits
from runner.models.recsys import SGL, LightGCN, SimGCL
from runner.models.recsys.base import bipartite_edge_index, edge_dropout_adjacency, normalized_adjacency


def random_graph(num_users=30, num_items=20, edges=150, seed=0):
    generator = torch.Generator().manual_seed(seed)
    pairs = torch.stack(
        [
            torch.randint(0, num_users, (edges,), generator=generator),
            torch.randint(0, num_items, (edges,), generator=generator),
        ]
    )
    return torch.unique(pairs, dim=1), num_users, num_items  # distinct (user, item) pairs


def test_gcn_norm_adjacency_is_the_symmetric_normalisation():
    graph, users, items = random_graph()
    dense = torch.zeros(users + items, users + items)
    dense[graph[0], graph[1] + users] = 1.0
    dense = dense + dense.T
    degree = dense.sum(1)
    inv_sqrt = torch.where(degree > 0, degree.pow(-0.5), 0.0)
    expected = inv_sqrt[:, None] * dense * inv_sqrt[None, :]
    assert torch.allclose(normalized_adjacency(graph, users, items).to_dense(), expected, atol=1e-6)


@pytest.mark.parametrize("model", [LightGCN, SimGCL])
def test_pyg_lgconv_propagation_equals_the_own_kernel(model):
    graph, users, items = random_graph()
    nets = {}
    for propagation in ("own", "pyg"):
        torch.manual_seed(0)
        nets[propagation] = model(users, items, graph, embedding_size=8, n_layers=3, propagation=propagation)
    batch = (torch.tensor([0, 3, 5]), torch.tensor([1, 2, 4]), torch.tensor([7, 8, 9]))
    grads = {}
    for propagation, net in nets.items():
        torch.manual_seed(1)  # SimGCL's noise
        loss = sum(net.loss_terms(*batch).values())
        loss.backward()
        grads[propagation] = (loss.detach(), net.user_embedding.weight.grad, net.item_embedding.weight.grad)
    for own, pyg in zip(grads["own"], grads["pyg"], strict=True):
        assert torch.allclose(own, pyg, atol=1e-6)
    u_own, i_own = nets["own"].final_embeddings()
    u_pyg, i_pyg = nets["pyg"].final_embeddings()
    assert torch.allclose(u_own, u_pyg, atol=1e-6) and torch.allclose(i_own, i_pyg, atol=1e-6)


def test_unknown_propagation_is_a_user_error():
    graph, users, items = random_graph()
    with pytest.raises(UserError, match="model.propagation"):
        LightGCN(users, items, graph, propagation="dgl")


def test_sgl_views_drop_whole_undirected_edges_at_the_ratio():
    graph, users, items = random_graph(60, 40, 2000)
    edge_index = bipartite_edge_index(graph, users)
    full = normalized_adjacency(graph, users, items).to_dense()
    assert torch.allclose(edge_dropout_adjacency(edge_index, users + items, 0.0).to_dense(), full, atol=1e-6)
    torch.manual_seed(0)
    view = edge_dropout_adjacency(edge_index, users + items, 0.3).to_dense()
    assert torch.equal(view != 0, (view != 0).T)  # both directions of an edge together
    kept = (view[:users, users:] != 0).sum().item() / graph.shape[1]
    assert kept == pytest.approx(0.7, abs=0.05)
    sgl = SGL(users, items, graph, embedding_size=8, drop_ratio=0.3)
    sgl.on_train_epoch_start(0)
    assert len(sgl.views) == 2 and not torch.equal(sgl.views[0].to_dense(), sgl.views[1].to_dense())


def test_pyg_link_prediction_metrics_match_ranking_metrics():
    torch.manual_seed(0)
    n_users, n_items, k = 40, 60, 10
    scores = torch.randn(n_users, n_items)
    relevant = torch.rand(n_users, n_items) < 0.1
    relevant[relevant.sum(1) == 0, 0] = (
        True  # PyG counts a user without relevant items as 0; RecBole drops it
    )
    ours = RankingMetrics((k,))
    ours.update(topk_hits(scores, relevant, k), relevant.sum(1))
    ours = ours.compute()
    top = torch.topk(scores, k, dim=1).indices
    ground_truth = relevant.nonzero().T  # [2, n]: (user row, item)
    ndcg, recall = LinkPredNDCG(k), LinkPredRecall(k)
    ndcg.update(top, ground_truth)
    recall.update(top, ground_truth)
    assert ours[f"ndcg@{k}"].item() == pytest.approx(ndcg.compute().item(), abs=1e-6)
    assert ours[f"recall@{k}"].item() == pytest.approx(recall.compute().item(), abs=1e-6)
