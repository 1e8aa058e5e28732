"""Network switches, streaming == whole-video forward, emission and NMS."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from runner.errors import UserError
from runner.methods.ovg_hq.emission import decode_spans, emit, finalize, nms
from runner.methods.ovg_hq.network import OVGHQNet, QueryInput
from runner.methods.ovg_hq.streaming import StreamingGrounder

SMALL = {"feature_dim": 24, "hidden": 32, "num_heads": 2, "ttt_head_dim": 16, "window": 6}


def _query(batch=1, seed=0):
    g = torch.Generator().manual_seed(seed)
    return QueryInput(
        text=torch.randn(batch, 5, 24, generator=g),
        text_mask=torch.tensor([[True] * 4 + [False]] * batch),
        visual=torch.randn(batch, 2, 24, generator=g),
        visual_mask=torch.ones(batch, 2, dtype=torch.bool),
    )


@pytest.mark.parametrize(
    "switches",
    [
        {"memory": "ttt"},
        {"memory": "lstm"},
        {"memory": "attention", "refinement_carry": False},
        {"memory": "none", "refinement_carry": False},
        {"memory": "ttt", "refinement": False},
    ],
)
def test_streaming_equals_whole_video_forward(switches):
    torch.manual_seed(0)
    net = OVGHQNet(**SMALL, **switches).eval()
    clips = torch.randn(1, 17, 24)
    query = _query()
    with torch.no_grad():
        padded = torch.nn.functional.pad(clips, (0, 0, net.window - 1, 0))
        full = net(padded, query)
    stream = StreamingGrounder(net, query, threshold=0.0, max_time=None)
    emitted = []
    for t in range(clips.shape[1]):
        emitted.append(stream.step(clips[0, t])[0])
        torch.testing.assert_close(
            stream.last_outputs["logits"][0], full["logits"][0, t], rtol=1e-4, atol=1e-5
        )
        torch.testing.assert_close(stream.last_outputs["spans"][0], full["spans"][0, t], rtol=1e-4, atol=1e-5)
    batch_emissions = emit(full["logits"][0], full["spans"][0], net.anchor_lengths, 1, 2.0, 0.0, None)
    np.testing.assert_allclose(np.concatenate(emitted), batch_emissions, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(stream.predictions()[0], finalize(batch_emissions, 0.1), rtol=1e-4, atol=1e-4)
    # each step emits at its own time: t_gen = boundary * 2 s
    assert all((e[:, 3] == 2.0 * (t + 1)).all() for t, e in enumerate(emitted))


def test_batched_streams_equal_the_whole_video_forward():
    torch.manual_seed(2)
    net = OVGHQNet(**SMALL).eval()
    clips = torch.randn(3, 9, 24)
    query = _query(3)
    with torch.no_grad():
        full = net(torch.nn.functional.pad(clips, (0, 0, 5, 0)), query)
    stream = StreamingGrounder(net, query, threshold=0.0)
    for t in range(9):
        stream.step(clips[:, t])
        torch.testing.assert_close(stream.last_outputs["logits"], full["logits"][:, t], rtol=1e-4, atol=1e-5)
    assert len(stream.predictions()) == 3


def test_chunk_forward_matches_slicing_the_whole_video_for_the_first_chunk():
    torch.manual_seed(1)
    net = OVGHQNet(**SMALL).eval()
    padded = torch.nn.functional.pad(torch.randn(2, 20, 24), (0, 0, 5, 0))
    query = _query(2)
    with torch.no_grad():
        full = net(padded, query)
        chunk = net(padded, query, first_window=torch.tensor([5, 5]), num_windows=6)
    torch.testing.assert_close(chunk["logits"], full["logits"][:, :6], rtol=1e-4, atol=1e-5)


def test_switches_change_the_model_and_offline_cannot_stream():
    torch.manual_seed(0)
    clips = torch.nn.functional.pad(torch.randn(1, 30, 24), (0, 0, 5, 0))
    outs = {}
    for memory in ("ttt", "none", "attention", "lstm"):
        torch.manual_seed(0)
        net = OVGHQNet(**SMALL, memory=memory).eval()
        with torch.no_grad():
            outs[memory] = net(clips, _query())["logits"]
    assert not torch.allclose(outs["ttt"], outs["none"])  # same weights, memory carried vs reset
    offline = OVGHQNet(**SMALL, context="offline").eval()
    valid = torch.ones(1, 35, dtype=torch.bool)
    valid[:, :5] = False
    with torch.no_grad():
        out = offline(clips, _query(), valid=valid)
    assert out["logits"].shape == (1, 30, 4, 2)
    with pytest.raises(UserError, match="offline"):
        StreamingGrounder(offline, _query())
    with pytest.raises(UserError, match="model.memory"):
        OVGHQNet(**SMALL, memory="gru")


def test_modality_tokens_only_in_hybrid_mode():
    net = OVGHQNet(**SMALL).eval()
    q = _query()
    tokens, pad = net.encode_query(q)
    assert tokens.shape[1] == 5 + 2 + 2 + 2  # text + visual + one modality token each + 2 null tokens
    text_only, _ = net.encode_query(QueryInput(text=q.text, text_mask=q.text_mask))
    assert text_only.shape[1] == 5 + 2
    assert pad[0].tolist() == [False] * 5 + [True] + [False] * 5
    spawned = net.spawn()
    assert spawned.describe() == net.describe()


def test_decode_and_nms():
    spans = torch.tensor([[[0.0, 0.0], [1.0, float(np.log(2.0))]]])  # anchors 1 and 4 at boundary 10
    windows = decode_spans(spans, torch.tensor([1.0, 4.0]), torch.tensor([10]))
    torch.testing.assert_close(windows[0], torch.tensor([[9.0, 10.0], [6.0, 14.0]]))
    rows = np.array([[0, 10, 0.5, 1], [1, 10, 0.9, 2], [20, 30, 0.9, 3], [9.5, 20, 0.8, 4]], dtype=float)
    kept = nms(rows, 0.1)
    # [1, 10] (0.9, first) then [20, 30] (0.9); [0, 10] overlaps [1, 10]; [9.5, 20] has IoU 0.5/19 < 0.1
    np.testing.assert_array_equal(kept[:, 2], [0.9, 0.9, 0.8])
    np.testing.assert_array_equal(kept[:2, 3], [2, 3])
    np.testing.assert_array_equal(finalize(np.zeros((0, 4)), 0.1), [[0, 0, 0, 0]])
    logits = torch.tensor([[[5.0, 0.0], [-5.0, 0.0]]])
    out = emit(logits, spans, torch.tensor([1.0, 4.0]), 10, 2.0, 0.5, 15.0)
    np.testing.assert_allclose(out, [[15.0, 15.0, torch.sigmoid(torch.tensor(5.0)).item(), 20.0]], rtol=1e-6)
