"""Temporal sampling (TSN segments, dense clips) and clip transforms."""

import pytest
import torch

from runner.data.video.sampling import dense_indices, uniform_segment_indices
from runner.data.video.transforms import ClipTransform


def test_uniform_eval_is_segment_centres():
    idx = uniform_segment_indices(80, 8, train=False)
    assert idx.dtype == torch.long
    assert idx.tolist() == [5, 15, 25, 35, 45, 55, 65, 75]


def test_uniform_train_one_index_per_segment():
    g = torch.Generator().manual_seed(0)
    for _ in range(20):
        idx = uniform_segment_indices(50, 5, train=True, generator=g)
        assert len(idx) == 5
        for k, i in enumerate(idx.tolist()):
            assert 10 * k <= i < 10 * (k + 1)


def test_uniform_short_video_repeats_in_range():
    idx = uniform_segment_indices(3, 8, train=True)
    assert len(idx) == 8 and idx.min() >= 0 and idx.max() <= 2
    assert torch.all(idx[1:] >= idx[:-1])


def test_dense_eval_centred_and_strided():
    idx = dense_indices(100, 8, 4, train=False)
    assert (idx[1:] - idx[:-1]).tolist() == [4] * 7
    span = 7 * 4 + 1
    assert idx[0].item() == (100 - span) // 2


def test_dense_train_random_start_within_bounds():
    g = torch.Generator().manual_seed(1)
    starts = set()
    for _ in range(50):
        idx = dense_indices(40, 4, 3, train=True, generator=g)
        assert idx.max() < 40 and (idx[1:] - idx[:-1]).tolist() == [3, 3, 3]
        starts.add(idx[0].item())
    assert len(starts) > 5


def test_dense_pads_with_last_frame():
    idx = dense_indices(10, 8, 2, train=True)
    assert idx.tolist() == [0, 2, 4, 6, 8, 9, 9, 9]


def test_sampling_rejects_bad_args():
    with pytest.raises(ValueError):
        dense_indices(0, 8, 2, train=False)
    with pytest.raises(ValueError):
        uniform_segment_indices(10, 0, train=False)


def _clip(t=6, h=48, w=64):
    return torch.randint(0, 256, (t, h, w, 3), dtype=torch.uint8)


def test_eval_transform_shape_and_normalisation():
    tf = ClipTransform(train=False, crop_size=32, short_side=40, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    clip = torch.full((4, 48, 64, 3), 255, dtype=torch.uint8)
    out = tf(clip)
    assert out.shape == (3, 4, 32, 32) and out.dtype == torch.float32
    assert torch.allclose(out, torch.ones_like(out))
    out0 = tf(torch.zeros_like(clip))
    assert torch.allclose(out0, -torch.ones_like(out0))


def test_eval_transform_is_deterministic_centre_crop():
    tf = ClipTransform(train=False, crop_size=32, short_side=48)
    clip = _clip(h=48, w=64)
    out = tf(clip)
    assert torch.equal(out, tf(clip))
    ref = (clip[:, 8:40, 16:48].permute(3, 0, 1, 2).float() / 255 - 0.45) / 0.225
    assert torch.allclose(out, ref, atol=1e-5)


def test_train_transform_jitter_crop_and_flip():
    tf = ClipTransform(train=True, crop_size=24, short_side=(28, 40), flip_prob=1.0)
    clip = _clip()
    out = tf(clip)
    assert out.shape == (3, 6, 24, 24)
    # forced flip = mirror of forced no-flip with the same random geometry
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    a, b = tf(clip, generator=g1, flip=True), tf(clip, generator=g2, flip=False)
    assert torch.allclose(a, b.flip(-1))
