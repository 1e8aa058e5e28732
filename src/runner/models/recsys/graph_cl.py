"""LightGCN and the graph contrastive baselines of the NLGCL paper: SGL, SimGCL, XSimGCL, NCL.

Defaults follow RecBole-GNN's model configs (the code base of the NLGCL release); where a value is
not there, the baseline paper's. Every contrastive term is returned as a named, weighted loss term.
Each model takes its own arguments and passes the rest (``**backbone``: ``embedding_size``,
``n_layers``, ``reg_weight``, ``require_pow``) to :class:`GraphRecommender`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from runner.errors import invalid_value
from runner.models.recsys.base import GraphRecommender, edge_dropout_adjacency
from runner.models.recsys.losses import info_nce

__all__ = ["LightGCN", "SGL", "SimGCL", "XSimGCL", "NCL", "kmeans", "first_occurrence", "distinct_info_nce"]


def first_occurrence(ids: torch.Tensor) -> torch.Tensor:
    """``bool [B]``: whether ``ids[b]`` is the first occurrence of its value (sort-based, no host sync)."""
    sorted_ids, order = torch.sort(ids, stable=True)
    first_sorted = torch.ones_like(sorted_ids, dtype=torch.bool)
    first_sorted[1:] = sorted_ids[1:] != sorted_ids[:-1]
    return torch.empty_like(first_sorted).scatter_(0, order, first_sorted)


def distinct_info_nce(
    x1: torch.Tensor,
    x2: torch.Tensor,
    ids: torch.Tensor,
    temperature: float,
    reduction: str,
    dedupe: bool | None = None,
) -> torch.Tensor:
    """InfoNCE between the two views ``x1[u]`` / ``x2[u]`` of the batch's *distinct* ids ``u``
    (candidates: ``x2`` of the same distinct ids; RecBole-GNN's ``torch.unique``). ``dedupe`` (default:
    on CPU) gathers the distinct rows with ``torch.unique``, which waits for the device; otherwise
    (CUDA) all ``B`` rows are used with the repeats masked out as anchors and candidates -- the same
    value, no host sync."""
    if dedupe is None:
        dedupe = ids.device.type == "cpu"
    if dedupe:
        distinct = torch.unique(ids)
        return info_nce(x1[distinct], x2[distinct], x2[distinct], temperature, reduction)
    return info_nce(x1[ids], x2[ids], x2[ids], temperature, reduction, keep=first_occurrence(ids))


class LightGCN(GraphRecommender):
    """LightGCN (He et al., SIGIR 2020): the backbone of every graph model here, no extra terms."""


class SGL(GraphRecommender):
    """SGL-ED (Wu et al., SIGIR 2021): two edge-dropout subgraphs per epoch (each training edge kept
    with probability ``1 - drop_ratio``, the same subgraph for every layer), InfoNCE between the two
    views of the batch users (candidates: all users of view 2) and of the batch positive items
    (candidates: all items).

    Loss: BPR + reg + ``ssl_weight`` * (ssl_user + ssl_item). Defaults: SELFRec's SGL (the SimGCL
    authors' reproduction: 2 layers, τ 0.2, weight 0.1, drop 0.1, InfoNCE averaged over the batch).
    RecBole-GNN sums the InfoNCE over the batch (``ssl_reduction: sum``, weight 0.01-0.05): with
    RecBole's batch-mean BPR that weights the contrast ~B times more per row, and on our twin BPR
    then did not move (measured: training loss flat for 8 epochs).
    """

    def __init__(
        self,
        num_users,
        num_items,
        train_graph,
        ssl_tau: float = 0.2,
        ssl_weight: float = 0.1,
        drop_ratio: float = 0.1,
        ssl_reduction: str = "mean",
        **backbone,
    ):
        super().__init__(num_users, num_items, train_graph, **backbone)
        self.ssl_tau = float(ssl_tau)
        self.ssl_weight = float(ssl_weight)
        self.drop_ratio = float(drop_ratio)
        self.ssl_reduction = ssl_reduction
        self.views: list[torch.Tensor] = []

    def edge_dropout_view(self) -> torch.Tensor:
        """An edge-dropout subgraph (torch-geometric ``dropout_edge``, both directions of an edge together)."""
        return edge_dropout_adjacency(self.edge_index, self.num_nodes, self.drop_ratio)

    def on_train_epoch_start(self, epoch: int) -> None:
        self.views = [self.edge_dropout_view(), self.edge_dropout_view()]

    def loss_terms(self, users, pos_items, neg_items, epoch: int = 0) -> dict[str, torch.Tensor]:
        terms = self.bpr_and_reg(self.readout(self.propagate()), users, pos_items, neg_items)
        if not self.views or self.views[0].device != self.adjacency.device:
            self.on_train_epoch_start(epoch)
        u1, i1 = self.split(self.readout(self.propagate(self.views[0])))
        u2, i2 = self.split(self.readout(self.propagate(self.views[1])))
        ssl_user = info_nce(u1[users], u2[users], u2, self.ssl_tau, self.ssl_reduction)
        ssl_item = info_nce(i1[pos_items], i2[pos_items], i2, self.ssl_tau, self.ssl_reduction)
        terms["ssl"] = self.ssl_weight * (ssl_user + ssl_item)
        return terms


class SimGCL(GraphRecommender):
    """SimGCL (Yu et al., SIGIR 2022): after every propagation layer add
    ``sign(E) * normalize(U(0,1) noise) * eps``; final embedding the mean of layers ``1..L`` (layer 0
    excluded, as in SimGCL/RecBole-GNN). BPR + reg on the clean forward; InfoNCE between two noisy
    forwards over the batch's unique users / items (in-batch candidates).

    Loss: BPR + reg + ``cl_rate`` * (cl_user + cl_item). Defaults: RecBole-GNN ``SimGCL.yaml``
    (λ 0.5, eps 0.1, τ 0.2). ``cl_reduction``: ``mean`` as in SELFRec (the SimGCL authors' code);
    RecBole-GNN sums (``sum``).
    """

    def __init__(
        self,
        num_users,
        num_items,
        train_graph,
        cl_rate: float = 0.5,
        eps: float = 0.1,
        temperature: float = 0.2,
        cl_reduction: str = "mean",
        **backbone,
    ):
        super().__init__(num_users, num_items, train_graph, **backbone)
        self.cl_rate = float(cl_rate)
        self.eps = float(eps)
        self.temperature = float(temperature)
        self.cl_reduction = cl_reduction

    def propagate(self, adjacency=None, perturbed: bool = False) -> list[torch.Tensor]:
        adjacency = self.adjacency if adjacency is None else adjacency
        layers = [self.ego_embeddings()]
        for _ in range(self.n_layers):
            x = self.layer(adjacency, layers[-1])
            if perturbed:
                x = x + torch.sign(x) * F.normalize(torch.rand_like(x), dim=-1) * self.eps
            layers.append(x)
        return layers

    def readout(self, layers: list[torch.Tensor]) -> torch.Tensor:
        return torch.stack(layers[1:]).mean(0)

    def cl(self, x1: torch.Tensor, x2: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """InfoNCE between the views of the batch's distinct ids (:func:`distinct_info_nce`)."""
        return distinct_info_nce(x1, x2, ids, self.temperature, self.cl_reduction)

    def loss_terms(self, users, pos_items, neg_items, epoch: int = 0) -> dict[str, torch.Tensor]:
        terms = self.bpr_and_reg(self.readout(self.propagate()), users, pos_items, neg_items)
        u1, i1 = self.split(self.readout(self.propagate(perturbed=True)))
        u2, i2 = self.split(self.readout(self.propagate(perturbed=True)))
        terms["cl"] = self.cl_rate * (self.cl(u1, u2, users) + self.cl(i1, i2, pos_items))
        return terms


class XSimGCL(SimGCL):
    """XSimGCL (Yu et al., TKDE 2023): one noisy forward serves both the recommendation loss and the
    contrast, which is between the final (mean of layers ``1..L``) embeddings and the noisy layer
    ``layer_cl``. Defaults: RecBole-GNN ``XSimGCL.yaml`` (λ 0.1, eps 0.2, τ 0.2, layer_cl 1,
    require_pow, InfoNCE mean).
    """

    def __init__(
        self,
        num_users,
        num_items,
        train_graph,
        cl_rate: float = 0.1,
        eps: float = 0.2,
        temperature: float = 0.2,
        layer_cl: int = 1,
        cl_reduction: str = "mean",
        **backbone,
    ):
        backbone.setdefault("require_pow", True)  # RecBole-GNN XSimGCL.yaml
        super().__init__(
            num_users, num_items, train_graph, cl_rate, eps, temperature, cl_reduction, **backbone
        )
        self.layer_cl = int(layer_cl)

    def loss_terms(self, users, pos_items, neg_items, epoch: int = 0) -> dict[str, torch.Tensor]:
        layers = self.propagate(perturbed=True)
        final = self.readout(layers)
        terms = self.bpr_and_reg(final, users, pos_items, neg_items)
        u, i = self.split(final)
        u_cl, i_cl = self.split(layers[self.layer_cl])
        terms["cl"] = self.cl_rate * (self.cl(u, u_cl, users) + self.cl(i, i_cl, pos_items))
        return terms


def kmeans(x: torch.Tensor, k: int, iterations: int = 20, generator: torch.Generator | None = None):
    """Lloyd's k-means on the device (stands in for faiss.Kmeans in RecBole-GNN NCL).

    Returns (centroids ``[k, d]``, assignment ``[n]``); initial centroids are ``k`` random points;
    an empty cluster keeps its previous centroid.
    """
    k = min(int(k), x.shape[0])
    index = torch.randperm(x.shape[0], device=x.device, generator=generator)[:k]
    centroids = x[index].clone()
    assign = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
    for _ in range(iterations):
        distance = (x * x).sum(1, keepdim=True) - 2 * x @ centroids.T + (centroids * centroids).sum(1)[None]
        assign = distance.argmin(1)
        sums = torch.zeros_like(centroids).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=k).to(x.dtype)[:, None]
        centroids = torch.where(counts > 0, sums / counts.clamp_min(1), centroids)
    return centroids, assign


class NCL(GraphRecommender):
    """NCL (Lin et al., WWW 2022), as in RecBole-GNN:

    * structural neighbours: InfoNCE between layer ``2 * hyper_layers`` and layer 0 of the batch users
      (candidates: all users at layer 0) and of the batch items (all items), τ ``ssl_temp``, summed;
      weighted ``ssl_reg * (user + alpha * item)``;
    * semantic neighbours (prototypes): k-means on the ego embeddings each epoch after
      ``warm_up_epochs`` (``num_clusters`` per side, normalised centroids); InfoNCE between the batch's
      layer-0 embeddings and their centroid (candidates: all centroids), weighted ``proto_reg``; the
      term is absent during warm-up.

    Defaults: RecBole-GNN ``NCL.yaml`` (3 layers, ssl_temp 0.1, ssl_reg 1e-7, alpha 1, proto_reg 8e-8,
    1000 clusters, warm-up 20 epochs). k-means: our own Lloyd iterations instead of faiss.
    """

    def __init__(
        self,
        num_users,
        num_items,
        train_graph,
        ssl_temp: float = 0.1,
        ssl_reg: float = 1e-7,
        alpha: float = 1.0,
        proto_reg: float = 8e-8,
        num_clusters: int = 1000,
        hyper_layers: int = 1,
        warm_up_epochs: int = 20,
        kmeans_iterations: int = 20,
        **backbone,
    ):
        backbone.setdefault("n_layers", 3)  # RecBole-GNN NCL.yaml
        super().__init__(num_users, num_items, train_graph, **backbone)
        if 2 * int(hyper_layers) > self.n_layers:
            raise invalid_value(
                "model.hyper_layers", hyper_layers, f"at most n_layers / 2 = {self.n_layers // 2} (NCL)"
            )
        self.ssl_temp = float(ssl_temp)
        self.ssl_reg = float(ssl_reg)
        self.alpha = float(alpha)
        self.proto_reg = float(proto_reg)
        self.num_clusters = int(num_clusters)
        self.hyper_layers = int(hyper_layers)
        self.warm_up_epochs = int(warm_up_epochs)
        self.kmeans_iterations = int(kmeans_iterations)
        self.prototypes: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def on_train_epoch_start(self, epoch: int) -> None:
        if epoch < self.warm_up_epochs:
            self.prototypes = {}
            return
        for side, table in (("user", self.user_embedding.weight), ("item", self.item_embedding.weight)):
            centroids, assign = kmeans(table.detach(), self.num_clusters, self.kmeans_iterations)
            self.prototypes[side] = F.normalize(centroids, dim=-1)
            self.prototypes[f"{side}_assign"] = assign

    def loss_terms(self, users, pos_items, neg_items, epoch: int = 0) -> dict[str, torch.Tensor]:
        layers = self.propagate()
        terms = self.bpr_and_reg(self.readout(layers), users, pos_items, neg_items)
        center_u, center_i = self.split(layers[0])
        context_u, context_i = self.split(layers[2 * self.hyper_layers])
        ssl_user = info_nce(context_u[users], center_u[users], center_u, self.ssl_temp)
        ssl_item = info_nce(context_i[pos_items], center_i[pos_items], center_i, self.ssl_temp)
        terms["ssl_structure"] = self.ssl_reg * (ssl_user + self.alpha * ssl_item)
        if self.prototypes and epoch >= self.warm_up_epochs:
            proto = 0.0
            for side, table, ids in (("user", center_u, users), ("item", center_i, pos_items)):
                centroids = self.prototypes[side]
                own = centroids[self.prototypes[f"{side}_assign"][ids]]
                # anchors are normalised inside info_nce; centroids already are
                proto = proto + info_nce(table[ids], own, centroids, self.ssl_temp)
            terms["proto"] = self.proto_reg * proto
        return terms
