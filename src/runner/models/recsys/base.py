"""Shared parts of the recommenders: the normalised bipartite graph, LightGCN propagation, and the
interface :class:`runner.methods.recsys.RecommenderModule` trains and evaluates.

Interface of a recommender (``nn.Module``):

* ``final_embeddings() -> (users [U, d], items [I, d])``: scoring is ``users @ items.T``;
* ``loss_terms(users, pos_items, neg_items, epoch) -> {name: weighted term}``; the total loss is their sum;
* ``on_train_epoch_start(epoch)``: per-epoch work (new augmented views, clustering).
"""

from __future__ import annotations

import warnings

import torch
from torch import nn
from torch_geometric.nn import LGConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import dropout_edge, to_torch_csr_tensor

from runner.errors import invalid_value
from runner.models.recsys.losses import bpr_loss, emb_loss

__all__ = [
    "PROPAGATIONS",
    "GraphRecommender",
    "Recommender",
    "bipartite_edge_index",
    "edge_dropout_adjacency",
    "gcn_normalized_csr",
    "normalized_adjacency",
    "symmetric_spmm",
]

# LightGCN propagation: "own" = symmetric_spmm (A x with the backward A g), "pyg" = torch-geometric's
# LGConv over the same CSR matrix (autograd's sparse backward). experiments/perf/recsys.py times both:
# on CPU LGConv's forward + backward was 2.3x slower (twin graph, 1 thread), so "own" is the default.
PROPAGATIONS = ("own", "pyg")


def bipartite_edge_index(train_graph: torch.Tensor, num_users: int) -> torch.Tensor:
    """``[2, 2E]`` edge index of the undirected user-item graph over ``U + I`` nodes (users first):
    every training pair ``(u, i)`` as ``u -> U + i`` (first half) and ``U + i -> u`` (second half)."""
    users, items = train_graph[0], train_graph[1] + num_users
    return torch.stack([torch.cat([users, items]), torch.cat([items, users])])


def normalized_adjacency(
    train_graph: torch.Tensor, num_users: int, num_items: int, keep: torch.Tensor | None = None
) -> torch.Tensor:
    """``D^-1/2 A D^-1/2`` of the user-item bipartite graph, no self-loops (LightGCN, eq. 7), as a
    sparse CSR matrix over ``num_users + num_items`` nodes (users first; duplicate edges summed).
    ``keep`` (bool per training edge) drops edges before normalising. Built with torch-geometric
    (:func:`gcn_normalized_csr`)."""
    if keep is not None:
        train_graph = train_graph[:, keep]
    return gcn_normalized_csr(bipartite_edge_index(train_graph, num_users), num_users + num_items)


def gcn_normalized_csr(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """torch-geometric's ``gcn_norm`` (no self-loops) of a symmetric ``edge_index`` as a torch CSR matrix.

    CSR, not COO: with torch 2.14 on CPU (1 thread) ``torch.sparse.mm`` of the twin's graph (71k
    non-zeros, d = 64) took 0.37 ms with CSR and 2.1 ms with COO. PyG's normalisation is as fast as
    the hand-written one it replaced (experiments/perf/recsys.py, "graph layer")."""
    edge_index, weight = gcn_norm(edge_index, None, num_nodes, add_self_loops=False)
    with warnings.catch_warnings():  # "sparse CSR support is in beta": used here for sparse.mm only
        warnings.simplefilter("ignore", UserWarning)
        return to_torch_csr_tensor(edge_index, weight, size=(num_nodes, num_nodes))


def edge_dropout_adjacency(edge_index: torch.Tensor, num_nodes: int, drop_ratio: float) -> torch.Tensor:
    """SGL-ED's view: each undirected edge dropped with probability ``drop_ratio`` (both directions
    together: torch-geometric ``dropout_edge(force_undirected=True)``), then normalised."""
    kept, _ = dropout_edge(edge_index, p=drop_ratio, force_undirected=True, training=True)
    return gcn_normalized_csr(kept, num_nodes)


class _SymmetricSparseMatmul(torch.autograd.Function):
    """``y = A x`` for a symmetric sparse ``A``; the backward is ``A g`` (no transpose of ``A``, no
    gradient for ``A``). Kept instead of torch-geometric's ``LGConv`` because the benchmark
    (experiments/perf/recsys.py) measures LGConv's autograd backward slower on CPU."""

    @staticmethod
    def forward(ctx, adjacency: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adjacency = adjacency
        return torch.sparse.mm(adjacency, x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, torch.sparse.mm(ctx.adjacency, grad)


def symmetric_spmm(adjacency: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``adjacency @ x`` for a symmetric sparse ``adjacency`` (the normalised bipartite graph)."""
    return _SymmetricSparseMatmul.apply(adjacency, x)


class Recommender(nn.Module):
    """Base class: sizes and the default (no-op) hooks."""

    def __init__(self, num_users: int, num_items: int):
        super().__init__()
        self.num_users = int(num_users)
        self.num_items = int(num_items)

    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def loss_terms(
        self, users: torch.Tensor, pos_items: torch.Tensor, neg_items: torch.Tensor, epoch: int = 0
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def on_train_epoch_start(self, epoch: int) -> None:
        """Per-epoch work (a new augmented graph, a clustering); nothing by default."""

    @property
    def trainable(self) -> bool:
        return any(p.requires_grad for p in self.parameters())


class GraphRecommender(Recommender):
    """LightGCN backbone (He et al., SIGIR 2020): ego embeddings (xavier-uniform, RecBole), ``L``
    propagation layers ``E^{l+1} = Â E^l`` (one sparse matmul per layer), final embedding the mean of
    layers ``0..L``; loss BPR + ``reg_weight`` * EmbLoss on the ego embeddings of the batch.
    ``Â`` is torch-geometric's ``gcn_norm`` of the bipartite graph; a layer is :func:`symmetric_spmm`
    (``propagation="own"``) or torch-geometric's ``LGConv`` (``"pyg"``) -- the same values.

    Args:
        num_users, num_items: sizes.
        train_graph: ``LongTensor[2, E]`` of training (user, item) pairs.
        embedding_size: ``d`` (64).
        n_layers: ``L``.
        reg_weight: weight of the embedding regulariser (1e-4).
        require_pow: RecBole EmbLoss variant (squared norms / 2) when True.
        propagation: ``own`` (default, faster on CPU) or ``pyg`` (see :data:`PROPAGATIONS`).
    """

    def __init__(
        self,
        num_users: int,
        num_items: int,
        train_graph: torch.Tensor,
        embedding_size: int = 64,
        n_layers: int = 2,
        reg_weight: float = 1e-4,
        require_pow: bool = False,
        propagation: str = "own",
    ):
        super().__init__(num_users, num_items)
        if propagation not in PROPAGATIONS:
            raise invalid_value("model.propagation", propagation, "one of " + ", ".join(PROPAGATIONS))
        self.propagation = propagation
        self.conv = LGConv(normalize=False)  # parameter-free; used when propagation == "pyg"
        self.n_layers = int(n_layers)
        self.reg_weight = float(reg_weight)
        self.require_pow = bool(require_pow)
        self.user_embedding = nn.Embedding(self.num_users, int(embedding_size))
        self.item_embedding = nn.Embedding(self.num_items, int(embedding_size))
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)
        train_graph = torch.as_tensor(train_graph, dtype=torch.long)
        self.register_buffer("train_graph", train_graph, persistent=False)
        self.register_buffer(
            "edge_index", bipartite_edge_index(train_graph, self.num_users), persistent=False
        )
        self.register_buffer(
            "adjacency", gcn_normalized_csr(self.edge_index, self.num_nodes), persistent=False
        )

    @property
    def num_nodes(self) -> int:
        return self.num_users + self.num_items

    def ego_embeddings(self) -> torch.Tensor:
        return torch.cat([self.user_embedding.weight, self.item_embedding.weight])

    def propagate(self, adjacency: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Embeddings of layers ``0..L`` (each ``[U + I, d]``)."""
        adjacency = self.adjacency if adjacency is None else adjacency
        layers = [self.ego_embeddings()]
        for _ in range(self.n_layers):
            layers.append(self.layer(adjacency, layers[-1]))
        return layers

    def layer(self, adjacency: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """One propagation ``Â x`` (:data:`PROPAGATIONS`)."""
        if self.propagation == "pyg":
            return self.conv(x, adjacency)
        return symmetric_spmm(adjacency, x)

    def split(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x[: self.num_users], x[self.num_users :]

    def readout(self, layers: list[torch.Tensor]) -> torch.Tensor:
        """Final embedding: mean of layers ``0..L`` (LightGCN eq. 8 with α_k = 1/(L+1))."""
        return torch.stack(layers).mean(0)

    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.split(self.readout(self.propagate()))

    def bpr_and_reg(
        self, final: torch.Tensor, users: torch.Tensor, pos_items: torch.Tensor, neg_items: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """BPR on the final embeddings + the weighted EmbLoss on the ego embeddings of the batch."""
        user_all, item_all = self.split(final)
        u, p, n = user_all[users], item_all[pos_items], item_all[neg_items]
        terms = {"bpr": bpr_loss((u * p).sum(-1), (u * n).sum(-1))}
        if self.reg_weight:
            terms["reg"] = self.reg_weight * emb_loss(
                self.user_embedding(users),
                self.item_embedding(pos_items),
                self.item_embedding(neg_items),
                require_pow=self.require_pow,
            )
        return terms

    def loss_terms(self, users, pos_items, neg_items, epoch: int = 0) -> dict[str, torch.Tensor]:
        return self.bpr_and_reg(self.readout(self.propagate()), users, pos_items, neg_items)
