"""Non-graph recommenders: MostPop (the trivial baseline every table shows) and BPR-MF."""

from __future__ import annotations

import torch
from torch import nn

from runner.models.recsys.base import Recommender
from runner.models.recsys.losses import bpr_loss, emb_loss

__all__ = ["MostPop", "BPRMF"]


class MostPop(Recommender):
    """Ranks every item by its number of training interactions, the same list for every user.

    No parameters: the method skips optimisation. Scores are ``ones[U, 1] @ popularity[1, I]``, so the
    evaluation path is the same matmul as for the learned models.
    """

    def __init__(self, num_users: int, num_items: int, train_graph: torch.Tensor):
        super().__init__(num_users, num_items)
        counts = torch.bincount(torch.as_tensor(train_graph, dtype=torch.long)[1], minlength=num_items)
        self.register_buffer("popularity", counts.float()[:, None], persistent=False)
        self.register_buffer("ones", torch.ones(num_users, 1), persistent=False)

    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.ones, self.popularity

    def loss_terms(self, users, pos_items, neg_items, epoch: int = 0) -> dict[str, torch.Tensor]:
        return {}


class BPRMF(Recommender):
    """Matrix factorisation trained with BPR (Rendle et al., UAI 2009; RecBole ``BPR``).

    Args:
        embedding_size: ``d``.
        reg_weight: weight of RecBole's EmbLoss on the batch embeddings (RecBole's BPR has none: 0).
    """

    def __init__(self, num_users: int, num_items: int, embedding_size: int = 64, reg_weight: float = 0.0):
        super().__init__(num_users, num_items)
        self.user_embedding = nn.Embedding(self.num_users, int(embedding_size))
        self.item_embedding = nn.Embedding(self.num_items, int(embedding_size))
        nn.init.xavier_normal_(self.user_embedding.weight)
        nn.init.xavier_normal_(self.item_embedding.weight)
        self.reg_weight = float(reg_weight)

    def final_embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.user_embedding.weight, self.item_embedding.weight

    def loss_terms(self, users, pos_items, neg_items, epoch: int = 0) -> dict[str, torch.Tensor]:
        u, p, n = self.user_embedding(users), self.item_embedding(pos_items), self.item_embedding(neg_items)
        terms = {"bpr": bpr_loss((u * p).sum(-1), (u * n).sum(-1))}
        if self.reg_weight:
            terms["reg"] = self.reg_weight * emb_loss(u, p, n)
        return terms
