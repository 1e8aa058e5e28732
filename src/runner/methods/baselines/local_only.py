"""SingleSet / local-only training (FedPall card's trivial baseline): every client trains its own model
on its own data and nothing is communicated.

Every parameter is personal (``personal_parameters`` matches every name), so all messages are zero,
the server model never moves and each client's personalised model is its own local model.
"""

from __future__ import annotations

from typing import Any

from runner.errors import invalid_value
from runner.federated.strategy import Strategy

__all__ = ["LocalOnly"]


class LocalOnly(Strategy):
    """Local training only (module docstring). Args: :class:`~runner.federated.strategy.Strategy`'s
    (``personal_parameters`` is fixed to every parameter)."""

    def __init__(self, **base: Any) -> None:
        given = base.pop("personal_parameters", None)
        if given not in (None, [], [""]):
            raise invalid_value(
                "fl_strategy.personal_parameters", given, '[""] (local-only keeps every parameter personal)'
            )
        super().__init__(personal_parameters=[""], **base)

    def setup(self, num_clients, initial, personal_mask, seed) -> None:
        from runner.methods.baselines.fedproto import personal_in_model_dtype

        super().setup(num_clients, initial, personal_mask, seed)
        personal_in_model_dtype(self, initial)
