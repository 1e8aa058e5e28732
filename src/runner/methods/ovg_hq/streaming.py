"""Streaming inference (issue 11, item 5): one clip feature in, the moments emitted at that clip out.

:class:`StreamingGrounder` encodes the query once; each :meth:`~StreamingGrounder.step` encodes only
the new clip (the encoder has no clip-clip attention), forms the causal window from the last
``window`` encoded clips (the first ones are the encodings of the zero clips the whole-video forward
pads with), runs the memory blocks, the decoder and the refinement for that one window with the carried
state, and emits as :func:`.emission.emit` does. :meth:`~StreamingGrounder.predictions` applies the
video-level NMS to everything emitted so far, exactly as the offline evaluation does, so streaming a
video clip by clip gives the predictions of the whole-video forward.
"""

from __future__ import annotations

import numpy as np
import torch

from runner.errors import UserError

from .emission import emit, finalize
from .network import OVGHQNet, QueryInput


class StreamingGrounder:
    """Online grounding of one query over a clip stream; see the module docstring."""

    def __init__(
        self,
        net: OVGHQNet,
        query: QueryInput,
        clip_seconds: float = 2.0,
        threshold: float = 0.5,
        max_time: float | None = 150.0,
        nms_iou: float = 0.1,
    ) -> None:
        if net.offline_context is not None:
            raise UserError(
                "model.context=offline sees the whole video and cannot stream; use context=causal"
            )
        if query.batch_size != 1:
            raise ValueError("StreamingGrounder takes one query (batch size 1)")
        self.net = net.eval()
        self.clip_seconds, self.threshold, self.max_time, self.nms_iou = (
            clip_seconds,
            threshold,
            max_time,
            nms_iou,
        )
        device = next(net.parameters()).device
        with torch.no_grad():
            self.query_tokens, self.query_pad = net.encode_query(query)
            zeros = torch.zeros(
                1, net.window - 1, net.feature_dim, device=device, dtype=self.query_tokens.dtype
            )
            self.buffer = net.encode_clips(zeros, self.query_tokens, self.query_pad)
        self.state = net.initial_state(1)
        self.boundary = 0
        self.emitted: list[np.ndarray] = []
        self.last_outputs: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def step(self, clip: torch.Tensor) -> np.ndarray:
        """Feed the next clip feature ``[F]``; returns the moments emitted now (``[k, 4]``:
        start, end, score, generation time in seconds)."""
        token = self.net.encode_clips(
            clip.reshape(1, 1, -1).to(self.buffer), self.query_tokens, self.query_pad
        )
        window = torch.cat([self.buffer, token], dim=1)
        self.buffer = window[:, 1:]
        outputs, self.state = self.net.windows_forward(window.unsqueeze(1), self.state)
        self.last_outputs = {k: v[0, 0] for k, v in outputs.items()}  # this clip's logits / spans / states
        self.boundary += 1
        emitted = emit(
            outputs["logits"][0],
            outputs["spans"][0],
            self.net.anchor_lengths,
            self.boundary,
            self.clip_seconds,
            self.threshold,
            self.max_time,
        )
        self.emitted.append(emitted)
        return emitted

    def predictions(self) -> np.ndarray:
        """Video-level NMS of everything emitted so far (the evaluation's predictions)."""
        emitted = np.concatenate(self.emitted) if self.emitted else np.zeros((0, 4))
        return finalize(emitted, self.nms_iou)
