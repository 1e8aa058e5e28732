"""The federated-learning engine: partitioners, client state, strategies, the two-path simulator,
robust aggregators, attacks, and the Lightning module / data module that run FL experiments."""

from .aggregators import AGGREGATORS, PRE_AGGREGATORS
from .attacks import ATTACKS
from .client_state import ClientState
from .datamodule import FederatedDataModule
from .module import FederatedModule, NonFiniteUpdate
from .simulator import ClientData, LocalTraining, ParamLayout
from .strategy import RobustStrategy, RoundPlan, Strategy

__all__ = [
    "AGGREGATORS",
    "ATTACKS",
    "PRE_AGGREGATORS",
    "ClientData",
    "ClientState",
    "FederatedDataModule",
    "FederatedModule",
    "LocalTraining",
    "NonFiniteUpdate",
    "ParamLayout",
    "RobustStrategy",
    "RoundPlan",
    "Strategy",
]
