"""FedAvg + fine-tuning (the personalisation baseline of PFLlib / CO-PFL's card).

Training is FedAvg (data-size weighted mean of the client models; ``server_lr = local_lr``). For the
personalised evaluation every client fine-tunes a copy of the global model for ``finetune_steps``
local SGD steps (``finetune_lr``) on minibatches of its own *training* data and is evaluated on its own
test split. The fine-tuning minibatches come from a fixed generator (seed, ``finetune_seed``), so
repeated evaluations of the same global model agree.
"""

from __future__ import annotations

from typing import Any

import torch

from runner.errors import invalid_value
from runner.federated.strategy import Strategy

__all__ = ["FedAvgFT"]


class FedAvgFT(Strategy):
    """FedAvg whose personalised model is the global model fine-tuned locally (module docstring).

    Args:
        finetune_steps: local SGD steps of the fine-tuning.
        finetune_lr: its learning rate (None = ``local_lr``).
        finetune_seed: offset of the fine-tuning generator's seed.
        **base: :class:`~runner.federated.strategy.Strategy` arguments.
    """

    def __init__(
        self,
        finetune_steps: int = 10,
        finetune_lr: float | None = None,
        finetune_seed: int = 977,
        **base: Any,
    ) -> None:
        super().__init__(**base)
        if int(finetune_steps) < 0:
            raise invalid_value("fl_strategy.finetune_steps", finetune_steps, "an integer >= 0")
        self.finetune_steps = int(finetune_steps)
        self.finetune_lr = self.local_lr if finetune_lr is None else float(finetune_lr)
        self.finetune_seed = int(finetune_seed)

    def client_evaluation_parameters(self, module, clients, global_params) -> torch.Tensor:
        start = super().client_evaluation_parameters(module, clients, global_params)
        if self.finetune_steps == 0:
            return start
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.finetune_seed)
        xs, ys = module.client_batches(clients, generator, steps=self.finetune_steps)
        result = module.train_clients(start, xs, ys, None, steps=self.finetune_steps, lr=self.finetune_lr)
        return result.final.detach()
