"""Losses (against hand-written formulas), the NLGCL term (against the card), and every recommender."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from runner.models.recsys import (
    BPRMF,
    NCL,
    NLGCL,
    SGL,
    LightGCN,
    MostPop,
    SimGCL,
    XSimGCL,
    kmeans,
    neighbour_layer_losses,
    normalized_adjacency,
)
from runner.models.recsys.base import symmetric_spmm
from runner.models.recsys.losses import bpr_loss, emb_loss, info_nce


def cos(a, b):
    return float(F.cosine_similarity(a[None], b[None])[0])


def test_bpr_and_emb_loss_match_recbole_formulas():
    pos, neg = torch.tensor([2.0, -1.0]), torch.tensor([0.5, 0.0])
    expected = -(math.log(1 / (1 + math.exp(-1.5))) + math.log(1 / (1 + math.exp(1.0)))) / 2
    assert bpr_loss(pos, neg).item() == pytest.approx(expected, rel=1e-6)
    a, b = torch.tensor([[3.0, 4.0], [0.0, 0.0]]), torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert emb_loss(a, b).item() == pytest.approx((5.0 + math.sqrt(5.0)) / 2)
    assert emb_loss(a, b, require_pow=True).item() == pytest.approx((25.0 + 5.0) / 2 / 2)


def test_info_nce_by_hand():
    torch.manual_seed(0)
    anchor, positive, candidates = torch.randn(3, 4), torch.randn(3, 4), torch.randn(5, 4)
    tau = 0.1
    total = 0.0
    for b in range(3):
        numerator = math.exp(cos(anchor[b], positive[b]) / tau)
        denominator = sum(math.exp(cos(anchor[b], c) / tau) for c in candidates)
        total += -math.log(numerator / denominator)
    assert info_nce(anchor, positive, candidates, tau).item() == pytest.approx(total, rel=1e-5)
    assert info_nce(anchor, positive, candidates, tau, "mean").item() == pytest.approx(total / 3, rel=1e-5)


def card_nlgcl(user_layers, item_layers, users, items, tau, entire=False):
    """The card's formula with explicit loops over layers and batch rows."""
    cl_u = cl_i = 0.0
    for layer in range(1, len(user_layers)):
        for b in range(len(users)):
            u, i = int(users[b]), int(items[b])
            prev_u = [user_layers[layer - 1][int(x)] for x in users]
            prev_i = [item_layers[layer - 1][int(x)] for x in items]
            cand_u = prev_u + prev_i if entire else prev_u
            cand_i = prev_u + prev_i if entire else prev_i
            anchor = item_layers[layer][i]
            pos = user_layers[layer - 1][u]
            cl_u += -cos(anchor, pos) / tau + math.log(sum(math.exp(cos(anchor, c) / tau) for c in cand_u))
            anchor = user_layers[layer][u]
            pos = item_layers[layer - 1][i]
            cl_i += -cos(anchor, pos) / tau + math.log(sum(math.exp(cos(anchor, c) / tau) for c in cand_i))
    return cl_u, cl_i


@pytest.mark.parametrize("scope", ["heterogeneous", "entire"])
def test_nlgcl_loss_matches_the_card_formula(scope):
    torch.manual_seed(1)
    user_layers = [torch.randn(4, 3) for _ in range(3)]
    item_layers = [torch.randn(5, 3) for _ in range(3)]
    users, items = torch.tensor([0, 2, 2, 3]), torch.tensor([4, 1, 0, 1])  # duplicates kept
    cl_u, cl_i = neighbour_layer_losses(user_layers, item_layers, users, items, 0.1, scope)
    want_u, want_i = card_nlgcl(user_layers, item_layers, users, items, 0.1, entire=scope == "entire")
    assert cl_u.item() == pytest.approx(want_u, rel=1e-5)
    assert cl_i.item() == pytest.approx(want_i, rel=1e-5)


def test_nlgcl_total_loss_weights_the_terms():
    graph = torch.tensor([[0, 0, 1, 2, 2], [0, 1, 1, 2, 0]])
    model = NLGCL(3, 3, graph, embedding_size=4, cl_reg=0.5, alpha=0.6, temperature=0.2)
    users, pos, neg = torch.tensor([0, 2]), torch.tensor([1, 2]), torch.tensor([2, 1])
    terms = model.loss_terms(users, pos, neg)
    layers = model.propagate()
    cl_u, cl_i = neighbour_layer_losses(
        [x[:3] for x in layers], [x[3:] for x in layers], users, pos, 0.2, "heterogeneous"
    )
    assert terms["cl_user"].item() == pytest.approx(0.5 * 0.6 * cl_u.item(), rel=1e-5)
    assert terms["cl_item"].item() == pytest.approx(0.5 * 0.4 * cl_i.item(), rel=1e-5)
    assert set(terms) == {"bpr", "reg", "cl_user", "cl_item"}


def test_normalized_adjacency_and_symmetric_spmm_gradient():
    graph = torch.tensor([[0, 0, 1], [0, 1, 1]])
    adj = normalized_adjacency(graph, 2, 2).to_dense()
    # degrees: u0 2, u1 1, i0 1, i1 2 → entry (u0, i1) = 1/sqrt(2*2)
    assert adj[0, 3].item() == pytest.approx(0.5) and adj[3, 0].item() == pytest.approx(0.5)
    assert adj[0, 2].item() == pytest.approx(1 / math.sqrt(2)) and adj[0, 1].item() == 0
    assert torch.allclose(adj, adj.T)
    x = torch.randn(4, 3, requires_grad=True)
    w = torch.randn(4, 3)
    (symmetric_spmm(normalized_adjacency(graph, 2, 2), x) * w).sum().backward()
    x2 = x.detach().clone().requires_grad_(True)
    ((adj @ x2) * w).sum().backward()
    assert torch.allclose(x.grad, x2.grad, atol=1e-6)
    dropped = normalized_adjacency(graph, 2, 2, keep=torch.tensor([True, False, True])).to_dense()
    assert dropped[0, 3].item() == 0 and dropped[0, 2].item() == pytest.approx(1.0)


@pytest.fixture
def toy_graph():
    torch.manual_seed(0)
    users = torch.arange(12).repeat_interleave(4)
    items = torch.randint(0, 10, (48,))
    return torch.stack([users, items])


@pytest.mark.parametrize(
    ("cls", "kwargs", "extra_terms"),
    [
        (LightGCN, {}, set()),
        (NLGCL, {}, {"cl_user", "cl_item"}),
        (NLGCL, {"scope": "entire"}, {"cl_user", "cl_item"}),
        (SGL, {"n_layers": 2}, {"ssl"}),
        (SimGCL, {}, {"cl"}),
        (XSimGCL, {}, {"cl"}),
        (NCL, {"n_layers": 2, "num_clusters": 3, "warm_up_epochs": 0}, {"ssl_structure", "proto"}),
    ],
)
def test_graph_models_train_and_score(toy_graph, cls, kwargs, extra_terms):
    model = cls(12, 10, toy_graph, embedding_size=8, **kwargs)
    model.on_train_epoch_start(0)
    users, pos = toy_graph[0, :16], toy_graph[1, :16]
    neg = torch.randint(0, 10, (16,))
    terms = model.loss_terms(users, pos, neg, epoch=0)
    assert set(terms) == {"bpr", "reg"} | extra_terms
    total = sum(terms.values())
    assert torch.isfinite(total)
    total.backward()
    assert model.user_embedding.weight.grad.abs().sum() > 0
    user_emb, item_emb = model.final_embeddings()
    assert user_emb.shape == (12, 8) and item_emb.shape == (10, 8)


def test_ncl_has_no_prototype_term_during_warm_up(toy_graph):
    model = NCL(12, 10, toy_graph, embedding_size=8, n_layers=2, num_clusters=3, warm_up_epochs=2)
    model.on_train_epoch_start(1)
    assert "proto" not in model.loss_terms(toy_graph[0, :8], toy_graph[1, :8], toy_graph[1, 8:16], epoch=1)


def test_kmeans_separates_clear_clusters():
    torch.manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 10.0], [-10.0, 10.0]])
    x = torch.cat([c + 0.1 * torch.randn(20, 2) for c in centres])
    centroids, assign = kmeans(x, 3, generator=torch.Generator().manual_seed(3))
    for block in range(3):
        assert len(set(assign[block * 20 : (block + 1) * 20].tolist())) == 1
    assert len(set(assign.tolist())) == 3


def test_mostpop_and_bprmf(toy_graph):
    pop = MostPop(12, 10, toy_graph)
    users, items = pop.final_embeddings()
    scores = users @ items.T
    counts = torch.bincount(toy_graph[1], minlength=10).float()
    assert torch.equal(scores[3], counts) and not pop.trainable
    mf = BPRMF(12, 10, embedding_size=4, reg_weight=0.1)
    terms = mf.loss_terms(torch.tensor([0, 1]), torch.tensor([2, 3]), torch.tensor([4, 5]))
    assert set(terms) == {"bpr", "reg"} and mf.trainable


@pytest.mark.parametrize("scope", ["heterogeneous", "entire"])
def test_grouped_nlgcl_equals_the_plain_batch_by_batch_info_nce(scope):
    torch.manual_seed(2)
    user_layers = [torch.randn(30, 6, dtype=torch.float64) for _ in range(3)]
    item_layers = [torch.randn(20, 6, dtype=torch.float64) for _ in range(3)]
    users, items = torch.randint(0, 30, (200,)), torch.randint(0, 20, (200,))  # many duplicates
    cl_u, cl_i = neighbour_layer_losses(user_layers, item_layers, users, items, 0.1, scope)
    want_u = want_i = 0.0
    for layer in (1, 2):
        prev_u, prev_i = user_layers[layer - 1][users], item_layers[layer - 1][items]
        both = torch.cat([prev_u, prev_i])
        want_u += info_nce(item_layers[layer][items], prev_u, both if scope == "entire" else prev_u, 0.1)
        want_i += info_nce(user_layers[layer][users], prev_i, both if scope == "entire" else prev_i, 0.1)
    assert cl_u.item() == pytest.approx(want_u.item(), rel=1e-9)
    assert cl_i.item() == pytest.approx(want_i.item(), rel=1e-9)


def test_unknown_contrastive_reduction_is_a_user_error():
    from runner.errors import UserError

    x = torch.randn(4, 3)
    with pytest.raises(UserError, match="one of sum, mean"):
        info_nce(x, x, x, temperature=0.2, reduction="summ")


def _reference_nlgcl(user_layers, item_layers, users, items, tau, scope):
    """The card's terms with the plain batch InfoNCE (autograd through info_nce)."""
    cl_u = cl_i = 0.0
    for layer in range(1, len(user_layers)):
        prev_u, prev_i = user_layers[layer - 1][users], item_layers[layer - 1][items]
        both = torch.cat([prev_u, prev_i])
        cl_u = cl_u + info_nce(item_layers[layer][items], prev_u, both if scope == "entire" else prev_u, tau)
        cl_i = cl_i + info_nce(user_layers[layer][users], prev_i, both if scope == "entire" else prev_i, tau)
    return cl_u, cl_i


@pytest.mark.parametrize("scope", ["heterogeneous", "entire"])
@pytest.mark.parametrize("dedupe", [True, False])
@pytest.mark.parametrize("tau", [0.1, 0.02])  # 0.02: 1/τ > 30, the row-maximum shift
def test_fused_nlgcl_values_and_gradients_equal_autograd(scope, dedupe, tau):
    torch.manual_seed(3)
    user_layers = [torch.randn(30, 6, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    item_layers = [torch.randn(20, 6, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    with torch.no_grad():
        user_layers[1][4] = 0.0  # a zero row: F.normalize's clamped branch
    users, items = torch.randint(0, 30, (120,)), torch.randint(0, 20, (120,))
    weights = (0.7, 1.9)  # distinct upstream gradients of the two terms
    got = neighbour_layer_losses(user_layers, item_layers, users, items, tau, scope, dedupe=dedupe)
    got_grads = torch.autograd.grad(weights[0] * got[0] + weights[1] * got[1], user_layers + item_layers)
    want = _reference_nlgcl(user_layers, item_layers, users, items, tau, scope)
    want_grads = torch.autograd.grad(weights[0] * want[0] + weights[1] * want[1], user_layers + item_layers)
    for g, w in zip(got, want, strict=True):
        assert g.item() == pytest.approx(w.item(), rel=1e-10)
    for g, w in zip(got_grads, want_grads, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-9, atol=1e-12)


def test_fused_nlgcl_stacked_tables_and_no_grad():
    torch.manual_seed(4)
    stacked_u, stacked_i = torch.randn(3, 8, 5), torch.randn(3, 7, 5)
    users, items = torch.tensor([0, 3, 3, 7]), torch.tensor([6, 6, 1, 2])
    lists = neighbour_layer_losses(list(stacked_u), list(stacked_i), users, items, 0.1)
    with torch.no_grad():
        stacked = neighbour_layer_losses(stacked_u, stacked_i, users, items, 0.1)
    for a, b in zip(lists, stacked, strict=True):
        assert a.item() == pytest.approx(b.item(), rel=1e-6)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_masked_distinct_info_nce_equals_the_unique_rows(reduction):
    from runner.models.recsys.graph_cl import distinct_info_nce, first_occurrence

    torch.manual_seed(5)
    ids = torch.randint(0, 15, (60,))
    keep = first_occurrence(ids)
    assert keep.sum().item() == ids.unique().numel()
    assert sorted(ids[keep].tolist()) == ids.unique().tolist()
    x1 = torch.randn(15, 4, dtype=torch.float64, requires_grad=True)
    x2 = torch.randn(15, 4, dtype=torch.float64, requires_grad=True)
    unique = distinct_info_nce(x1, x2, ids, 0.2, reduction, dedupe=True)
    masked = distinct_info_nce(x1, x2, ids, 0.2, reduction, dedupe=False)  # the CUDA path
    assert masked.item() == pytest.approx(unique.item(), rel=1e-12)
    grads_unique = torch.autograd.grad(unique, (x1, x2))
    grads_masked = torch.autograd.grad(masked, (x1, x2))
    for a, b in zip(grads_unique, grads_masked, strict=True):
        torch.testing.assert_close(a, b)
