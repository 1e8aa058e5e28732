"""Token mixers of the Parametric Memory Block (card ``ovg_hq.md``: "Two such blocks (RMSNorm → TTT →
residual → SwiGLU)") and its ablations, selected by ``model.memory``:

* ``ttt``: TTT-Linear (:class:`runner.models.ttt.TTTLinear`), one closed-form mini-batch update per
  window, the weights carried across windows through the whole video (the paper's PMB);
* ``none``: the same TTT-Linear reset to its learned initial state at every window — the model sees
  only its 16-clip sliding window (no memory);
* ``attention``: causal softmax self-attention inside the window instead of the PMB ("w/o PMB,
  attention"), nothing carried across windows;
* ``lstm``: an LSTM over the window's tokens whose ``(h, c)`` is carried from window to window (a
  recurrent memory with the same update schedule as TTT: one update per window).

Every mixer maps ``x [B, n, m, D]`` (``n`` windows of ``m`` tokens, in time order) and a state to
``(y [B, n, m, D], state)``; ``initial_state(B)`` is the state before the first window.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from runner.models.ttt import TTTLinear


class TTTMixer(nn.Module):
    """TTT-Linear with (``ttt``) or without (``none``) the state carried across windows."""

    def __init__(self, width: int, num_heads: int, window: int, carry: bool, base_lr: float = 1.0) -> None:
        super().__init__()
        self.ttt = TTTLinear(width, num_heads, window, base_lr=base_lr, carry=carry)

    def initial_state(self, batch_size: int) -> Any:
        return self.ttt.initial_state(batch_size) if self.ttt.carry else None

    def forward(self, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        y, new_state = self.ttt(x, state)
        return y, (new_state if self.ttt.carry else None)


class WindowAttentionMixer(nn.Module):
    """Causal multi-head self-attention inside each window; no state."""

    def __init__(self, width: int, num_heads: int, window: int) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(width, num_heads, batch_first=True)
        mask = torch.triu(torch.ones(window, window, dtype=torch.bool), diagonal=1)
        self.register_buffer("causal_mask", mask, persistent=False)

    def initial_state(self, batch_size: int) -> Any:
        return None

    def forward(self, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        b, n, m, d = x.shape
        flat = x.reshape(b * n, m, d)
        y, _ = self.attn(flat, flat, flat, attn_mask=self.causal_mask[:m, :m], need_weights=False)
        return y.view(b, n, m, d), None


class LSTMMixer(nn.Module):
    """An LSTM run over each window's tokens, starting from the state the previous window left."""

    def __init__(self, width: int, num_heads: int, window: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(width, width, batch_first=True)

    def initial_state(self, batch_size: int) -> Any:
        return None

    def forward(self, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        outs = []
        for i in range(x.shape[1]):
            y, state = self.lstm(x[:, i], state)
            outs.append(y)
        return torch.stack(outs, dim=1), state


class SwiGLU(nn.Module):
    def __init__(self, width: int, hidden: int) -> None:
        super().__init__()
        self.gate = nn.Linear(width, hidden, bias=False)
        self.up = nn.Linear(width, hidden, bias=False)
        self.down = nn.Linear(hidden, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class MemoryBlock(nn.Module):
    """``x + mixer(RMSNorm(x))`` then ``x + SwiGLU(RMSNorm(x))`` (one PMB block)."""

    def __init__(self, width: int, num_heads: int, window: int, memory: str, ffn_mult: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.RMSNorm(width)
        self.norm2 = nn.RMSNorm(width)
        self.mixer = build_mixer(memory, width, num_heads, window)
        self.ffn = SwiGLU(width, int(width * ffn_mult))

    def initial_state(self, batch_size: int) -> Any:
        return self.mixer.initial_state(batch_size)

    def forward(self, x: torch.Tensor, state: Any) -> tuple[torch.Tensor, Any]:
        y, state = self.mixer(self.norm1(x), state)
        x = x + y
        return x + self.ffn(self.norm2(x)), state


MIXERS = {
    "ttt": functools.partial(TTTMixer, carry=True),
    "none": functools.partial(TTTMixer, carry=False),
    "attention": WindowAttentionMixer,
    "lstm": LSTMMixer,
}
MEMORY_KINDS = tuple(MIXERS)


def build_mixer(memory: str, width: int, num_heads: int, window: int) -> nn.Module:
    """The mixer named by ``model.memory`` (a key of :data:`MIXERS`)."""
    if memory not in MIXERS:
        raise ValueError(f"memory={memory!r}: one of {', '.join(MIXERS)}")
    return MIXERS[memory](width, num_heads, window)
