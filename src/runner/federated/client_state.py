"""Persistent per-client tensors, stacked on the device.

:class:`ClientState` holds one ``(num_clients, *shape)`` buffer per named quantity (personal
parameters, momentum buffers, prototypes, masks, ...). Being an ``nn.Module`` with buffers, it moves
with the LightningModule (``.to(device)``) and is saved in, and restored from, every checkpoint.
Buffers are created in ``setup`` (which Lightning runs before restoring a checkpoint), so a resumed
run finds them in place.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ClientState"]


class ClientState(nn.Module):
    """Named stacked per-client tensors with gather / scatter by client id."""

    def __init__(self, num_clients: int = 0) -> None:
        super().__init__()
        self.num_clients = int(num_clients)
        self.names: list[str] = []

    def add(
        self, name: str, shape: tuple[int, ...], init: torch.Tensor | float = 0.0, dtype=torch.float32
    ) -> torch.Tensor:
        """Create ``name`` with shape ``(num_clients, *shape)``, filled from ``init`` (broadcast)."""
        value = torch.zeros((self.num_clients, *shape), dtype=dtype)
        value[:] = init if isinstance(init, float | int) else init.to(dtype)
        self.register_buffer(name, value)
        if name not in self.names:
            self.names.append(name)
        return value

    def get(self, name: str, clients: torch.Tensor) -> torch.Tensor:
        """Rows of ``name`` for ``clients`` (a long tensor of ids), as a new tensor."""
        return getattr(self, name).index_select(0, clients)

    def set(self, name: str, clients: torch.Tensor, values: torch.Tensor) -> None:
        """Write ``values`` into the rows of ``clients``."""
        getattr(self, name).index_copy_(0, clients, values.to(getattr(self, name).dtype))

    def __contains__(self, name: str) -> bool:
        return name in self.names
