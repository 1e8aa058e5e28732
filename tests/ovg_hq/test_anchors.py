"""Anchor labels: the vectorised rule against a literal per-anchor loop (the official code's rules)."""

from __future__ import annotations

import math

import numpy as np

from runner.data.grounding.anchors import anchor_labels, cached_anchor_labels, label_recipe


def _iou(a, b):  # (end, length) boxes, as the code
    st, ed, tst, ted = a[0] - a[1], a[0], b[0] - b[1], b[0]
    return (min(ed, ted) - max(st, tst)) / max(max(ed, ted) - min(st, tst), 1)


def _includes(y, target):  # the code's box_include: target strictly contains y
    st, ed, tst, ted = y[0] - y[1], y[0], target[0] - target[1], target[0]
    return ed > tst and tst < st and ted > ed


def brute_force(windows, num_clips, anchors, pos_iou=0.5, clip=2.0, max_clips=None):
    t_max = max_clips or max(num_clips)
    pos = np.zeros((len(windows), t_max, len(anchors)), bool)
    tgt = np.zeros((len(windows), t_max, len(anchors), 2), np.float32)
    for q, wins in enumerate(windows):
        gts = []
        for s, e in wins:
            s, e = round(s / clip), round(e / clip)
            gts.append((e, e - s))
        for t in range(1, num_clips[q] + 1):
            for j, length in enumerate(anchors):
                box = (t, length)
                for gt in gts:
                    if (
                        _iou(box, gt) >= pos_iou
                        or (j == len(anchors) - 1 and _includes(box, gt))
                        or (j == 0 and _includes(gt, box))
                    ):
                        pos[q, t - 1, j] = True
                        tgt[q, t - 1, j] = ((gt[0] - t) / length, math.log(max(1, gt[1]) / length))
    return pos, tgt


def test_vectorised_labels_equal_the_loop_on_random_windows():
    rng = np.random.default_rng(0)
    windows, clips = [], []
    for _ in range(60):
        n = int(rng.integers(10, 40))
        wins = []
        for _ in range(int(rng.integers(0, 4))):
            s = float(rng.integers(0, 2 * n - 2))
            e = s + float(rng.integers(1, 40))
            wins.append([s, min(e, 2 * n)])
        windows.append(wins)
        clips.append(n)
    pos, tgt = anchor_labels(windows, clips, (1, 2, 4, 8))
    pos_ref, tgt_ref = brute_force(windows, clips, (1, 2, 4, 8))
    np.testing.assert_array_equal(pos, pos_ref)
    np.testing.assert_allclose(tgt, tgt_ref, rtol=1e-6, atol=1e-6)
    assert pos.any()


def test_hand_made_case():
    # one GT of clips [2, 12) (seconds [4, 24]) in a 16-clip video
    pos, tgt = anchor_labels([[[4.0, 24.0]]], [16], (1, 2, 4, 8), max_clips=20)
    # boundary 12 (index 11): the 8-clip anchor [4, 12] has IoU 0.8 -> positive, Δo = 0, Δl = log(10/8)
    assert pos[0, 11, 3]
    np.testing.assert_allclose(tgt[0, 11, 3], [0.0, math.log(10 / 8)], rtol=1e-6)
    # boundary 8: the 8-clip anchor [0, 8] is not inside (starts before the GT); IoU = 6/12 = 0.5 -> positive
    assert pos[0, 7, 3]
    np.testing.assert_allclose(tgt[0, 7, 3], [(12 - 8) / 8, math.log(10 / 8)], rtol=1e-6)
    # boundary 11: [3, 11] is strictly inside [2, 12] -> positive by the containment rule (IoU 0.8 anyway)
    assert pos[0, 10, 3]
    # boundary 14 (after the GT end): [6, 14] still has IoU 6/12 = 0.5 -> positive, Δo < 0
    assert pos[0, 13, 3] and tgt[0, 13, 3, 0] < 0
    # short anchors far from the GT end are negative; nothing after the video end (16 clips)
    assert not pos[0, 5, 0] and not pos[0, 16:].any()


def test_cache_round_trip_and_key(tmp_path):
    windows, clips = [[[0.0, 10.0]], [[6.0, 30.0], [40.0, 44.0]]], [20, 25]
    first = cached_anchor_labels(tmp_path, windows, clips, (1, 2, 4, 8), 0.5, 2.0, 75)
    files = list(tmp_path.glob("anchors_*.npz"))
    assert len(files) == 1
    again = cached_anchor_labels(tmp_path, windows, clips, (1, 2, 4, 8), 0.5, 2.0, 75)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert label_recipe(windows, clips, (1, 2, 4, 8), 0.5, 2.0, 75) != label_recipe(
        windows, clips, (1, 2, 4, 16), 0.5, 2.0, 75
    )
