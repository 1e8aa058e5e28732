"""Recommenders of the NLGCL experiments: MostPop, BPR-MF, LightGCN, SGL, SimGCL, XSimGCL, NCL, NLGCL."""

from runner.models.recsys.base import GraphRecommender, Recommender, normalized_adjacency
from runner.models.recsys.graph_cl import NCL, SGL, LightGCN, SimGCL, XSimGCL, kmeans
from runner.models.recsys.nlgcl import NLGCL, neighbour_layer_losses
from runner.models.recsys.simple import BPRMF, MostPop

__all__ = [
    "BPRMF",
    "NCL",
    "NLGCL",
    "SGL",
    "GraphRecommender",
    "LightGCN",
    "MostPop",
    "Recommender",
    "SimGCL",
    "XSimGCL",
    "kmeans",
    "neighbour_layer_losses",
    "normalized_adjacency",
]
