"""Skeleton networks: ST-GCN and the hybrid STEP classifier, ST-GCN++, and the Feat2Net MLP / LSTM.

Every network declares ``inputs`` — the batch keys its ``forward`` takes, in order (``"joints"``
``[N, M, T, V, C]`` and / or ``"affective"`` ``[N, F]``) — so one training module serves them all.
"""

from runner.models.skeleton.feat2net import AffectiveMLP, JointLSTM
from runner.models.skeleton.graph import partitioned_adjacency
from runner.models.skeleton.stgcn import STGCN, STEPHybrid
from runner.models.skeleton.stgcnpp import STGCNPlusPlus

__all__ = ["STGCN", "AffectiveMLP", "JointLSTM", "STEPHybrid", "STGCNPlusPlus", "partitioned_adjacency"]
