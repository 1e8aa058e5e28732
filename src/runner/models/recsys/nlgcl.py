"""NLGCL: neighbour-layer graph contrastive learning (arXiv 2507.07522, RecSys 2025), as the card
reads the official code (Jinfeng-Xu/NLGCL, on RecBole-GNN).

The contrastive views are neighbouring LightGCN layers -- no augmentation, no extra propagation.
For ``l = 1..L`` (card, "Method"):

    cl_u += InfoNCE(anchor = I[l][pos_item], positive = U[l-1][user],     candidates = U[l-1][batch users])
    cl_i += InfoNCE(anchor = U[l][user],     positive = I[l-1][pos_item], candidates = I[l-1][batch items])

cosine similarity, temperature τ, in-batch negatives of the positive's type (duplicates kept),
summed over the batch. Loss: ``BPR + reg_weight * EmbLoss + cl_reg * (α cl_u + (1 - α) cl_i)``.

``scope="entire"`` is a **reconstruction** (the paper's "entire-scope" variant, not in the official
code): the candidates are the batch users *and* the batch items of layer ``l-1`` (negatives of both
types) for both terms.

Cost: the ``2 L`` terms need per batch ``2 L`` ``[A, C]`` score matmuls forward, ``4 L`` backward and
``2 L`` exponentials of the ``[A, C]`` matrix (``A``, ``C``: distinct batch nodes on CPU, ``B`` on
CUDA); everything else -- normalisation, positives, the denominators' weights -- is done on the
``[n, d]`` rows inside one autograd function (``_NeighbourLayerInfoNCE``). The share of the epoch
this takes against LightGCN is measured by experiments/perf/recsys.py (experiments/nlgcl/speed.md).
"""

from __future__ import annotations

import warnings

import torch

from runner.models.recsys.base import GraphRecommender

__all__ = ["NLGCL", "SCOPES", "neighbour_layer_losses"]

SCOPES = ("heterogeneous", "entire")


# cosine / τ lies in [-1/τ, 1/τ]: in float32 / float64 exp() of it needs no shift while 1/τ <= 30
# (exp(±30) and a batch's sum of them are far inside the range); otherwise each row's maximum is used
_NO_SHIFT_MAX_SCALE = 30.0


_NORM_EPS = 1e-12  # F.normalize's


def _batch_rows(ids: torch.Tensor, dedupe: bool) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """(rows to gather, position of each batch entry among them or None for the identity, multiplicity)."""
    if dedupe:
        distinct, where, counts = torch.unique(ids, return_inverse=True, return_counts=True)
        return distinct, where, counts
    return ids, None, torch.ones(ids.shape, dtype=torch.long, device=ids.device)


def _normalize(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``F.normalize(x, dim=-1)`` with what its backward needs: (y, 1 / max(|x|, eps), |x| > eps)."""
    norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    inverse = norm.clamp_min(_NORM_EPS).reciprocal()
    return x * inverse, inverse, (norm > _NORM_EPS).to(x.dtype)


def _normalize_backward(dy: torch.Tensor, y: torch.Tensor, inverse: torch.Tensor, unclamped: torch.Tensor):
    """d/dx of ``<dy, x / max(|x|, eps)>``: ``(dy - y <y, dy>) / |x|`` (``dy / eps`` where clamped)."""
    radial = (y * dy).sum(-1, keepdim=True) * unclamped
    return (dy - y * radial) * inverse


def _denominator(x, y, weights, counts, shift, grad_x, grad_y, scale):
    """``sum_a w_a log sum_c n_c exp(<x_a, y_c>)`` and its gradient, accumulated into ``grad_x`` /
    ``grad_y`` (``x`` holds unit rows, the scores are ``scale <x_a, y_c>``): one ``[A, C]``
    matmul, one exponential and one matrix-vector product forward, two matmuls backward (the
    weights go on the ``[A, d]`` / ``[C, d]`` factors, no other pass over the ``[A, C]`` matrix)."""
    scores = (x * scale) @ y.T
    if shift is None:
        row_shift = scores.amax(1, keepdim=True)
        exp_scores = scores.sub_(row_shift).exp_()
        row_shift = row_shift.squeeze(1)
    else:
        exp_scores = (scores.sub_(shift) if shift else scores).exp_()
        row_shift = shift
    if grad_x is None:
        denominator = exp_scores @ counts
    else:  # one matmul gives E (n * y) for grad_x and, as its last column, the denominators E n
        weighted = exp_scores @ torch.cat([counts[:, None] * y, counts[:, None]], 1)
        denominator = weighted[:, -1]
    value = (weights * (denominator.log() + row_shift)).sum()
    if grad_x is not None:
        row = (weights * scale / denominator)[:, None]
        grad_x += row * weighted[:, :-1]
        grad_y += counts[:, None] * (exp_scores.T @ (row * x))
    return value


class _NeighbourLayerInfoNCE(torch.autograd.Function):
    """``(cl_u, cl_i)`` from the gathered raw rows ``[L+1, Du, d]`` / ``[L+1, Di, d]`` of the batch.

    Normalisation, the ``2 L`` InfoNCE terms and their gradients are computed together in the
    forward (the loss is a sum, its gradient linear in the two upstream scalars), so the ``[A, C]``
    score matrices are freed one by one instead of being kept for the backward, and no autograd
    graph of a few dozen small ops is built per batch; the backward scales the stored gradients.
    """

    @staticmethod
    def forward(ctx, user_rows, item_rows, pairs, user_counts, item_counts, scale, shift, entire):
        want_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1]
        n_layers, num_u = user_rows.shape[0] - 1, user_rows.shape[1]
        nu, inv_u, ok_u = _normalize(user_rows)
        ni, inv_i, ok_i = _normalize(item_rows)
        # positives: sum_b <x[item_b], y[user_b]> = sum <x, pairs @ y>, pairs[a, c] = count of the batch
        # pair (item row a, user row c); the identity for the plain batch
        pos_u = nu if pairs is None else _layerwise_mm(pairs[0], nu)  # [L+1, Di, d]
        pos_i = ni if pairs is None else _layerwise_mm(pairs[1], ni)  # [L+1, Du, d]
        both_counts = torch.cat([user_counts, item_counts]) if entire else None
        values, grads = [], []
        for term in ("user", "item"):
            g_u = torch.zeros_like(nu) if want_grad else None
            g_i = torch.zeros_like(ni) if want_grad else None
            total = user_rows.new_zeros(())
            for layer in range(1, n_layers + 1):
                if term == "user":  # anchor I[l][pos], positive U[l-1][user], candidates U[l-1][batch users]
                    anchors, weights, cands, counts = ni[layer], item_counts, nu[layer - 1], user_counts
                    grad_a, grad_c = (g_i[layer], g_u[layer - 1]) if want_grad else (None, None)
                    paired_c, paired_a = pos_u[layer - 1], pos_i[layer]
                else:  # anchor U[l][user], positive I[l-1][pos], candidates I[l-1][batch items]
                    anchors, weights, cands, counts = nu[layer], user_counts, ni[layer - 1], item_counts
                    grad_a, grad_c = (g_u[layer], g_i[layer - 1]) if want_grad else (None, None)
                    paired_c, paired_a = pos_i[layer - 1], pos_u[layer]
                if entire:  # reconstruction: candidates of both types (users first)
                    both = torch.cat([nu[layer - 1], ni[layer - 1]])
                    both_grad = torch.zeros_like(both) if want_grad else None
                    total = total + _denominator(
                        anchors, both, weights, both_counts, shift, grad_a, both_grad, scale
                    )
                    if want_grad:
                        g_u[layer - 1] += both_grad[:num_u]
                        g_i[layer - 1] += both_grad[num_u:]
                else:
                    total = total + _denominator(
                        anchors, cands, weights, counts, shift, grad_a, grad_c, scale
                    )
                # numerator: sum_b scale <anchor_b, positive_b>
                total = total - scale * (anchors * paired_c).sum()
                if want_grad:
                    grad_a.sub_(paired_c, alpha=scale)
                    grad_c.sub_(paired_a, alpha=scale)
            values.append(total)
            grads += [g_u, g_i]
        if want_grad:  # gradients w.r.t. the unit rows; through the normalisation in the backward
            ctx.save_for_backward(*grads, nu, inv_u, ok_u, ni, inv_i, ok_i)
        return values[0], values[1]

    @staticmethod
    def backward(ctx, grad_user_term, grad_item_term):
        du_u, di_u, du_i, di_i, nu, inv_u, ok_u, ni, inv_i, ok_i = ctx.saved_tensors
        grad_users = _normalize_backward(grad_user_term * du_u + grad_item_term * du_i, nu, inv_u, ok_u)
        grad_items = _normalize_backward(grad_user_term * di_u + grad_item_term * di_i, ni, inv_i, ok_i)
        return grad_users, grad_items, None, None, None, None, None, None


def _layerwise_mm(matrix: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """``matrix @ rows[l]`` for every layer ``l`` of ``rows [L+1, n, d]`` in one sparse matmul."""
    layers, n, d = rows.shape
    flat = rows.transpose(0, 1).reshape(n, layers * d)
    return torch.sparse.mm(matrix, flat).reshape(-1, layers, d).transpose(0, 1)


def _pair_matrices(item_where: torch.Tensor, user_where: torch.Tensor, num_items: int, num_users: int):
    """Sparse CSR ``[Di, Du]`` counts of the batch's (item row, user row) pairs and its transpose
    (built from sorted pair keys: no COO coalescing)."""

    def csr(rows: torch.Tensor, cols: torch.Tensor, num_rows: int, num_cols: int) -> torch.Tensor:
        keys, counts = torch.unique(rows * num_cols + cols, return_counts=True)  # sorted by (row, col)
        row_counts = torch.bincount(keys // num_cols, minlength=num_rows)
        crow = torch.cat([row_counts.new_zeros(1), torch.cumsum(row_counts, 0)])
        with warnings.catch_warnings():  # "sparse CSR support is in beta": used for sparse.mm only
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(
                crow, keys % num_cols, counts.float(), (num_rows, num_cols), check_invariants=False
            )

    return csr(item_where, user_where, num_items, num_users), csr(
        user_where, item_where, num_users, num_items
    )


def neighbour_layer_losses(
    user_layers: list[torch.Tensor] | torch.Tensor,
    item_layers: list[torch.Tensor] | torch.Tensor,
    users: torch.Tensor,
    pos_items: torch.Tensor,
    temperature: float,
    scope: str = "heterogeneous",
    dedupe: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(cl_u, cl_i)`` of the card's formula from per-layer user / item tables (``[U, d]``, ``[I, d]``
    each, as lists or stacked ``[L+1, U, d]`` / ``[L+1, I, d]``).

    Each InfoNCE is ``sum_b [log sum_j exp(s(a_b, c_j)) - s(a_b, p_b)]`` with ``s`` = cosine / τ. The
    rows of every layer at the batch's users and items are gathered once per batch; normalisation,
    scores and gradients are computed in one fused autograd function (``_NeighbourLayerInfoNCE``).

    ``dedupe`` (default: on CPU only) computes each denominator once per *distinct* anchor over
    *distinct* candidates weighted by their multiplicity, ``sum_j exp(s(a, c_j)) = sum_{c distinct}
    count(c) exp(s(a, c))`` -- exact, and ``distinct x distinct`` instead of ``B x B`` work when the
    batch repeats nodes. ``torch.unique`` waits for the device, so on CUDA the plain ``B x B`` batch
    is used (no host sync; the same value and gradient, see tests/recsys).
    """
    if scope not in SCOPES:
        from runner.errors import invalid_value

        raise invalid_value("model.scope", scope, "one of " + ", ".join(SCOPES))
    if dedupe is None:
        dedupe = users.device.type == "cpu"
    scale = 1.0 / float(temperature)
    user_ids, user_where, user_counts = _batch_rows(users, dedupe)
    item_ids, item_where, item_counts = _batch_rows(pos_items, dedupe)
    if isinstance(user_layers, torch.Tensor):
        user_rows, item_rows = user_layers.index_select(1, user_ids), item_layers.index_select(1, item_ids)
    else:
        user_rows = torch.stack([table[user_ids] for table in user_layers])
        item_rows = torch.stack([table[item_ids] for table in item_layers])
    dtype = user_rows.dtype
    wide = dtype in (torch.float32, torch.float64)
    shift = 0.0 if wide and scale <= _NO_SHIFT_MAX_SCALE else None
    pairs = None
    if dedupe:
        pairs = tuple(
            m.to(dtype) for m in _pair_matrices(item_where, user_where, item_ids.numel(), user_ids.numel())
        )
    return _NeighbourLayerInfoNCE.apply(
        user_rows,
        item_rows,
        pairs,
        user_counts.to(dtype),
        item_counts.to(dtype),
        scale,
        shift,
        scope == "entire",
    )


class NLGCL(GraphRecommender):
    """NLGCL on the LightGCN backbone (L = 2, d = 64, xavier init, mean of layers 0..L).

    Args:
        cl_reg: weight of the contrastive loss (5e-5; the paper's grid 1e-5 ... 1e-4).
        alpha: balance of ``cl_u`` / ``cl_i`` (0.6).
        temperature: τ (0.1).
        scope: ``heterogeneous`` (official code) or ``entire`` (reconstruction, see module docstring).
        dedupe: group repeated batch nodes (exact; default None = on CPU only, see
            :func:`neighbour_layer_losses`).
        **backbone: :class:`GraphRecommender`'s arguments (sizes, graph, ``embedding_size``, ``n_layers``,
            ``reg_weight``, ``require_pow``).
    """

    def __init__(
        self,
        num_users,
        num_items,
        train_graph,
        cl_reg: float = 5e-5,
        alpha: float = 0.6,
        temperature: float = 0.1,
        scope: str = "heterogeneous",
        dedupe: bool | None = None,
        **backbone,
    ):
        super().__init__(num_users, num_items, train_graph, **backbone)
        if scope not in SCOPES:
            from runner.errors import invalid_value

            raise invalid_value("model.scope", scope, "one of " + ", ".join(SCOPES))
        self.cl_reg = float(cl_reg)
        self.alpha = float(alpha)
        self.temperature = float(temperature)
        self.scope = scope
        self.dedupe = dedupe

    def loss_terms(self, users, pos_items, neg_items, epoch: int = 0) -> dict[str, torch.Tensor]:
        layers = torch.stack(self.propagate())  # [L+1, U+I, d]
        terms = self.bpr_and_reg(layers.mean(0), users, pos_items, neg_items)
        cl_u, cl_i = neighbour_layer_losses(
            layers[:, : self.num_users],
            layers[:, self.num_users :],
            users,
            pos_items,
            self.temperature,
            self.scope,
            self.dedupe,
        )
        terms["cl_user"] = self.cl_reg * self.alpha * cl_u
        terms["cl_item"] = self.cl_reg * (1 - self.alpha) * cl_i
        return terms
