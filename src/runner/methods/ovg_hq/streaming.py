"""Streaming inference (issue 11, item 5): one clip feature in, the moments emitted at that clip out.

:class:`StreamingGrounder` encodes the query once; each :meth:`~StreamingGrounder.step` encodes only
the new clip (the encoder has no clip-clip attention), forms the causal window from the last
``window`` encoded clips (the first ones are the encodings of the zero clips the whole-video forward
pads with), runs the memory blocks, the decoder and the refinement for that one window with the carried
state, and emits as :func:`.emission.emit` does. :meth:`~StreamingGrounder.predictions` applies the
video-level NMS to everything emitted so far, exactly as the offline evaluation does, so streaming a
video clip by clip gives the predictions of the whole-video forward.

Several streams (one query each, clips arriving in lock-step) run as one batch: ``query`` of batch
size ``B`` and ``step(clips [B, F])``.
"""

from __future__ import annotations

import numpy as np
import torch

from runner.errors import UserError

from .emission import emit, finalize
from .network import OVGHQNet, QueryInput


class StreamingGrounder:
    """Online grounding of ``B`` queries over their clip streams; see the module docstring."""

    def __init__(
        self,
        net: OVGHQNet,
        query: QueryInput,
        clip_seconds: float = 2.0,
        threshold: float = 0.5,
        max_time: float | None = 150.0,
        nms_iou: float = 0.1,
        emit_moments: bool = True,
    ) -> None:
        if net.offline_context is not None:
            raise UserError(
                "model.context=offline sees the whole video and cannot stream; use context=causal"
            )
        self.net = net.eval()
        self.clip_seconds, self.threshold, self.max_time, self.nms_iou = (
            clip_seconds,
            threshold,
            max_time,
            nms_iou,
        )
        self.emit_moments = emit_moments
        self.batch_size = query.batch_size
        with torch.no_grad():
            self.query_tokens, self.query_pad = net.encode_query(query)
            zeros = torch.zeros(
                self.batch_size,
                net.window - 1,
                net.feature_dim,
                device=self.query_tokens.device,
                dtype=self.query_tokens.dtype,
            )
            self.buffer = net.encode_clips(zeros, self.query_tokens, self.query_pad)
        self.state = net.initial_state(self.batch_size)
        self.boundary = 0
        self.emitted: list[list[np.ndarray]] = [[] for _ in range(self.batch_size)]
        self.last_outputs: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def step(self, clips: torch.Tensor) -> list[np.ndarray]:
        """Feed the next clip feature of every stream (``[B, F]``, or ``[F]`` for one stream); returns,
        per stream, the moments emitted now (``[k, 4]``: start, end, score, generation time in s)."""
        clips = clips.reshape(self.batch_size, 1, -1).to(self.buffer)
        token = self.net.encode_clips(clips, self.query_tokens, self.query_pad)
        window = torch.cat([self.buffer, token], dim=1)
        self.buffer = window[:, 1:]
        outputs, self.state = self.net.windows_forward(window.unsqueeze(1), self.state)
        self.last_outputs = {k: v[:, 0] for k, v in outputs.items()}  # this clip's logits / spans / states
        self.boundary += 1
        if not self.emit_moments:
            return []
        out = []
        for b in range(self.batch_size):
            emitted = emit(
                outputs["logits"][b],
                outputs["spans"][b],
                self.net.anchor_lengths,
                self.boundary,
                self.clip_seconds,
                self.threshold,
                self.max_time,
            )
            self.emitted[b].append(emitted)
            out.append(emitted)
        return out

    def predictions(self) -> list[np.ndarray]:
        """Per stream, the video-level NMS of everything emitted so far (the evaluation's predictions)."""
        return [finalize(np.concatenate(e) if e else np.zeros((0, 4)), self.nms_iou) for e in self.emitted]
