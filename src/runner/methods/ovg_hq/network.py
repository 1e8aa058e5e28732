"""The OVG-HQ-Unify network (card ``ovg_hq.md``, "Model" and "Read from the official code").

    clip features ─ LN → Dropout → Linear ─┐
                                            ├─ 2 × cross-attention (clip attends to query tokens)
    query streams ─ LN → Dropout → Linear ─┘     (+ a learned modality token per stream when hybrid)
      → causal windows of ``window`` clips, stride 1 (+ slot embedding)
      → Parametric Memory Block: 2 × [RMSNorm → TTT-Linear → residual → RMSNorm → SwiGLU → residual],
        the TTT weights carried from window to window (``memory`` switch, :mod:`.memory`)
      → DETR decoder (2 layers) with one query per anchor (lengths 1/2/4/8 clips ending at the window end)
      → heads: fg/bg logits and (Δo, Δl)
      → refinement TTT (1 head, mini-batch = the window's anchors, carried across windows) over
        Linear(4→D)(logits, span) + last decoder state; its Linear(D→4) output replaces logits and span.

Because the encoder has no attention between clips, each clip is encoded once and its token reused by
the 16 windows that contain it (the streaming path encodes one new clip per step).
``context=offline`` adds a bidirectional self-attention layer over the whole video's clip tokens before
windowing: the model then sees the future (the offline upper bound; it cannot stream).

Assumptions (not fixed by the card or the code read): ``null_tokens`` learned tokens appended to the
query keys (without them a one-token image query gives every clip the same attention output); the
refinement input sums (rather than
concatenates) the Linear(4→D) projection and the decoder state; window slots carry a learned position
embedding; no positional encoding on query tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from runner.errors import invalid_value
from runner.models.ttt import TTTLinear

from .memory import MIXERS, MemoryBlock

CONTEXTS = ("causal", "offline")


@dataclass
class QueryInput:
    """Query token features; ``*_mask`` is True on real tokens. A stream that is None is absent."""

    text: torch.Tensor | None = None  # [B, Lt, F]
    text_mask: torch.Tensor | None = None  # [B, Lt] bool
    visual: torch.Tensor | None = None  # [B, Lv, F] (image or video-segment features)
    visual_mask: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        t = self.text if self.text is not None else self.visual
        return int(t.shape[0])

    def select(self, index: torch.Tensor) -> QueryInput:
        pick = lambda t: None if t is None else t[index]  # noqa: E731
        return QueryInput(pick(self.text), pick(self.text_mask), pick(self.visual), pick(self.visual_mask))


@dataclass
class StreamState:
    """What the network carries between windows: one state per memory block and the refinement's."""

    blocks: list[Any] = field(default_factory=list)
    refine: Any = None


class StreamProjection(nn.Module):
    """LayerNorm → Dropout → Linear (one per input stream, as the code)."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(in_dim), nn.Dropout(dropout), nn.Linear(in_dim, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class CrossAttentionLayer(nn.Module):
    """Clip tokens attend to query tokens (post-norm), then a feed-forward layer."""

    def __init__(self, width: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(width, num_heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(width)
        self.ffn = nn.Sequential(
            nn.Linear(width, 4 * width), nn.GELU(), nn.Dropout(dropout), nn.Linear(4 * width, width)
        )
        self.norm2 = nn.LayerNorm(width)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, memory: torch.Tensor, memory_pad: torch.Tensor) -> torch.Tensor:
        y, _ = self.attn(x, memory, memory, key_padding_mask=memory_pad, need_weights=False)
        x = self.norm1(x + self.dropout(y))
        return self.norm2(x + self.dropout(self.ffn(x)))


class DecoderLayer(nn.Module):
    """DETR decoder layer: anchor-query self-attention, cross-attention to the window, FFN (post-norm)."""

    def __init__(self, width: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(width, num_heads, dropout=dropout, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(width, num_heads, dropout=dropout, batch_first=True)
        self.ffn = nn.Sequential(
            nn.Linear(width, 4 * width), nn.ReLU(), nn.Dropout(dropout), nn.Linear(4 * width, width)
        )
        self.norms = nn.ModuleList(nn.LayerNorm(width) for _ in range(3))
        self.dropout = nn.Dropout(dropout)

    def forward(self, q: torch.Tensor, pos: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        y, _ = self.self_attn(q + pos, q + pos, q, need_weights=False)
        q = self.norms[0](q + self.dropout(y))
        y, _ = self.cross_attn(q + pos, memory, memory, need_weights=False)
        q = self.norms[1](q + self.dropout(y))
        return self.norms[2](q + self.dropout(self.ffn(q)))


class OVGHQNet(nn.Module):
    """Online grounding network; see the module docstring.

    Args:
        feature_dim: width of the clip / query features (512 for CLIP ViT-B/32).
        hidden: model width (256), num_heads: attention heads (8).
        window: clips per causal window (16), anchors: anchor lengths in clips (1, 2, 4, 8).
        encoder_layers / decoder_layers / memory_blocks: 2 / 2 / 2.
        memory: ``ttt`` | ``none`` | ``attention`` | ``lstm`` (:mod:`.memory`).
        ttt_head_dim: the per-head TTT state is ``ttt_head_dim²`` (32 → 8 heads at width 256).
        refinement: the refinement TTT on/off; refinement_carry: its state carried across windows.
        context: ``causal`` (online) or ``offline`` (sees the whole video: the upper bound).
        input_dropout: the Dropout of the input projections (0.5 in the code); dropout: elsewhere.
        modality_tokens: prepend a learned token to each query stream when both are present.
        null_tokens: learned key/value tokens appended to every query (QD-DETR's dummy tokens; an
            assumption, 0 disables): a clip unrelated to the query can attend to them, so the attention
            output depends on clip-query similarity even for a one-token (image) query.
    """

    def __init__(
        self,
        feature_dim: int = 512,
        hidden: int = 256,
        num_heads: int = 8,
        window: int = 16,
        anchors: Sequence[int] = (1, 2, 4, 8),
        encoder_layers: int = 2,
        decoder_layers: int = 2,
        memory_blocks: int = 2,
        memory: str = "ttt",
        ttt_head_dim: int = 32,
        refinement: bool = True,
        refinement_carry: bool = True,
        context: str = "causal",
        input_dropout: float = 0.5,
        dropout: float = 0.1,
        modality_tokens: bool = True,
        null_tokens: int = 2,
    ) -> None:
        super().__init__()
        if memory not in MIXERS:
            raise invalid_value("model.memory", memory, "one of " + ", ".join(MIXERS))
        if context not in CONTEXTS:
            raise invalid_value("model.context", context, "one of " + ", ".join(CONTEXTS))
        self.config = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.config["anchors"] = [int(a) for a in anchors]
        self.feature_dim, self.hidden, self.window = int(feature_dim), int(hidden), int(window)
        self.register_buffer("anchor_lengths", torch.tensor([float(a) for a in anchors]), persistent=False)
        self.num_anchors = len(anchors)
        self.context = context
        self.use_modality_tokens = bool(modality_tokens)

        self.video_proj = StreamProjection(feature_dim, hidden, input_dropout)
        self.text_proj = StreamProjection(feature_dim, hidden, input_dropout)
        self.visual_proj = StreamProjection(feature_dim, hidden, input_dropout)
        self.modality_tokens = nn.Parameter(torch.randn(2, hidden) * 0.02)  # [text, visual]
        self.null_tokens = nn.Parameter(torch.randn(int(null_tokens), hidden) * 0.02)
        self.encoder = nn.ModuleList(
            CrossAttentionLayer(hidden, num_heads, dropout) for _ in range(encoder_layers)
        )
        self.offline_context = (
            nn.TransformerEncoderLayer(hidden, num_heads, 4 * hidden, dropout, batch_first=True)
            if context == "offline"
            else None
        )
        self.slot_embed = nn.Parameter(torch.randn(window, hidden) * 0.02)
        ttt_heads = max(1, hidden // int(ttt_head_dim))
        self.blocks = nn.ModuleList(
            MemoryBlock(hidden, ttt_heads, window, memory) for _ in range(memory_blocks)
        )
        self.anchor_queries = nn.Parameter(torch.randn(self.num_anchors, hidden) * 0.02)
        self.anchor_pos = nn.Parameter(torch.randn(self.num_anchors, hidden) * 0.02)
        self.decoder = nn.ModuleList(DecoderLayer(hidden, num_heads, dropout) for _ in range(decoder_layers))
        self.class_head = nn.Linear(hidden, 2)  # [foreground, background]
        self.span_head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 2))
        self.refine_in = nn.Linear(4, hidden) if refinement else None
        self.refine_ttt = (
            TTTLinear(hidden, 1, self.num_anchors, carry=refinement_carry) if refinement else None
        )
        self.refine_out = nn.Linear(hidden, 4) if refinement else None

    # ------------------------------------------------------------------ construction helpers
    def spawn(self) -> OVGHQNet:
        """A freshly initialised network of the same architecture (the expert of distillation)."""
        return type(self)(**self.config)

    def describe(self) -> dict[str, Any]:
        return {"class": f"{type(self).__module__}.{type(self).__qualname__}", **self.config}

    # ------------------------------------------------------------------ encoders
    def encode_query(self, query: QueryInput) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens [B, Lq, D], padding [B, Lq] True on padding)`` of the present query streams."""
        hybrid = query.text is not None and query.visual is not None
        parts, pads = [], []
        for feats, mask, proj, idx in (
            (query.text, query.text_mask, self.text_proj, 0),
            (query.visual, query.visual_mask, self.visual_proj, 1),
        ):
            if feats is None:
                continue
            tokens = proj(feats)
            mask = (
                mask
                if mask is not None
                else torch.ones(tokens.shape[:2], dtype=torch.bool, device=tokens.device)
            )
            if hybrid and self.use_modality_tokens:
                token = self.modality_tokens[idx].expand(tokens.shape[0], 1, -1)
                tokens = torch.cat([token, tokens], dim=1)
                mask = torch.cat([torch.ones_like(mask[:, :1]), mask], dim=1)
            parts.append(tokens)
            pads.append(~mask)
        if not parts:
            raise ValueError("OVGHQNet: a query needs at least one of text / visual")
        if len(self.null_tokens):
            batch = parts[0].shape[0]
            parts.append(self.null_tokens.expand(batch, -1, -1))
            pads.append(torch.zeros(batch, len(self.null_tokens), dtype=torch.bool, device=parts[0].device))
        return torch.cat(parts, dim=1), torch.cat(pads, dim=1)

    def encode_clips(
        self, clips: torch.Tensor, query_tokens: torch.Tensor, query_pad: torch.Tensor
    ) -> torch.Tensor:
        """``clips [B, T, F]`` → ``[B, T, D]``: each clip attends to the query (no clip-clip attention)."""
        x = self.video_proj(clips)
        for layer in self.encoder:
            x = layer(x, query_tokens, query_pad)
        return x

    # ------------------------------------------------------------------ per-window part
    def initial_state(self, batch_size: int) -> StreamState:
        return StreamState(
            blocks=[block.initial_state(batch_size) for block in self.blocks],
            refine=None if self.refine_ttt is None else self.refine_ttt.initial_state(batch_size),
        )

    def windows_forward(
        self, windows: torch.Tensor, state: StreamState
    ) -> tuple[dict[str, torch.Tensor], StreamState]:
        """``windows [B, n, w, D]`` (encoded clips of n consecutive windows, in time order) →
        outputs per window (``logits [B, n, A, 2]``, ``spans [B, n, A, 2]``, ``states [B, n, layers, A, D]``)."""
        b, n, w, d = windows.shape
        x = windows + self.slot_embed[-w:]
        block_states = []
        for block, s in zip(self.blocks, state.blocks, strict=True):
            x, s = block(x, s)
            block_states.append(s)
        memory = x.reshape(b * n, w, d)
        q = self.anchor_queries.expand(b * n, -1, -1)
        pos = self.anchor_pos.expand(b * n, -1, -1)
        layer_states = []
        for layer in self.decoder:
            q = layer(q, pos, memory)
            layer_states.append(q)
        last = q.view(b, n, self.num_anchors, d)
        logits = self.class_head(last)
        spans = self.span_head(last)
        refine_state = state.refine
        if self.refine_ttt is not None:
            tokens = self.refine_in(torch.cat([logits, spans], dim=-1)) + last
            refined, refine_state = self.refine_ttt(tokens, state.refine)
            out = self.refine_out(refined)
            logits, spans = out[..., :2], out[..., 2:]
        states = torch.stack(layer_states, dim=1).view(b, n, len(self.decoder), self.num_anchors, d)
        outputs = {"logits": logits, "spans": spans, "states": states}
        return outputs, StreamState(blocks=block_states, refine=refine_state)

    # ------------------------------------------------------------------ whole sequences
    def forward(
        self,
        video: torch.Tensor,
        query: QueryInput,
        first_window: torch.Tensor | None = None,
        num_windows: int | None = None,
        valid: torch.Tensor | None = None,
        state: StreamState | None = None,
        return_state: bool = False,
    ) -> dict[str, Any]:
        """Outputs for consecutive windows of a left-padded clip sequence.

        Args:
            video: ``[B, S, F]`` clip features with ``window − 1`` zero clips in front (the window
                ending at padded position ``p`` covers ``p − window + 1 .. p``).
            query: the query streams.
            first_window: ``[B]`` padded position of each sample's first window end (default
                ``window − 1``: the first real clip); num_windows: windows to compute (default: to the end).
            valid: ``[B, S]`` True on real clips (only the offline context uses it: padding is masked).
            state: the carried state to start from (default: the learned initial state).
        """
        b, s, _ = video.shape
        w = self.window
        device = video.device
        if first_window is None:
            first_window = torch.full((b,), w - 1, dtype=torch.long, device=device)
        n = int(num_windows) if num_windows is not None else s - int(first_window.max())
        tokens, pad = self.encode_query(query)
        span = n + w - 1
        index = (first_window - (w - 1)).unsqueeze(1) + torch.arange(span, device=device)  # [B, span]
        if self.offline_context is not None:
            encoded = self.encode_clips(video, tokens, pad)
            key_pad = None if valid is None else ~valid
            encoded = self.offline_context(encoded, src_key_padding_mask=key_pad)
            clips = encoded.gather(1, index.unsqueeze(-1).expand(-1, -1, encoded.shape[-1]))
        else:
            chunk = video.gather(1, index.unsqueeze(-1).expand(-1, -1, video.shape[-1]))
            clips = self.encode_clips(chunk, tokens, pad)
        windows = clips.unfold(1, w, 1).permute(0, 1, 3, 2)  # [B, n, w, D]
        outputs, new_state = self.windows_forward(windows, state or self.initial_state(b))
        if return_state:
            outputs["state"] = new_state
        return outputs
