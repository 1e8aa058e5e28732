"""Online metrics against brute-force computations on hand-made cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from runner.metrics.online_grounding import (
    MAP_IOUS,
    OnlineMeanAP,
    OnlineRecallAt1,
    average_precision,
    timeliness,
)

TOLS = (1.0, 3.0, 5.0)


def beta(t_gen, gt_end, ts):
    if ts is None or t_gen <= gt_end:
        return 1.0
    if t_gen <= gt_end + ts:
        return 1.0 - (t_gen - gt_end) / ts
    return 0.0


def iou(a, b):
    inter = max(0.0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def brute_r1(preds, gts, m, ts):
    best_score, top = -1.0, None
    for p in preds:  # first of the highest score
        if p[2] > best_score:
            best_score, top = p[2], p
    gi = max(range(len(gts)), key=lambda g: (iou(top, gts[g]), -g))
    return beta(top[3], gts[gi][1], ts) if iou(top, gts[gi]) >= m else 0.0


def brute_ap(preds, gts, m, ts):
    order = sorted(range(len(preds)), key=lambda i: (-preds[i][2], i))
    taken = [False] * len(gts)
    tp_beta, precisions, recalls = 0.0, [], []
    for k, i in enumerate(order, start=1):
        p = preds[i]
        cands = sorted(range(len(gts)), key=lambda g: (-iou(p, gts[g]), g))
        for g in cands:
            if iou(p, gts[g]) < m:
                break
            if not taken[g]:
                taken[g] = True
                tp_beta += beta(p[3], gts[g][1], ts)
                break
        precisions.append(tp_beta / k)
        recalls.append(tp_beta / len(gts))
    # VOC all-point interpolation, written out
    rec = [0.0, *recalls, 1.0]
    prec = [0.0, *precisions, 0.0]
    ap = 0.0
    for i in range(1, len(rec)):
        if rec[i] != rec[i - 1]:
            ap += (rec[i] - rec[i - 1]) * max(prec[i:])
    return ap


CASES = {
    # qid: (predictions [s, e, score, t_gen], GT windows)
    1: ([[10, 20, 0.9, 14], [40, 50, 0.6, 44]], [[10, 20]]),  # early, exact
    2: ([[10, 20, 0.9, 22], [11, 19, 0.8, 30]], [[10, 20]]),  # late by 2 s; a second one too late
    3: ([[0, 0, 0, 0]], [[30, 40]]),  # never emitted
    4: ([[30, 42, 0.7, 36], [58, 70, 0.7, 60]], [[30, 40], [60, 70]]),  # tie in score, two GT windows
    5: ([[60, 70, 0.5, 64], [30, 40, 0.5, 44], [0, 10, 0.4, 4]], [[30, 40], [60, 70], [0, 8]]),
}


def _update(metric):
    qids = list(CASES)
    metric.update(
        [torch.tensor(CASES[q][0], dtype=torch.float64) for q in qids],
        [torch.tensor(CASES[q][1], dtype=torch.float64) for q in qids],
        torch.tensor(qids),
    )


@pytest.mark.parametrize("online", [True, False])
def test_recall_at_1_matches_brute_force(online):
    metric = OnlineRecallAt1(tolerances=TOLS, online=online)
    _update(metric)
    values = metric.compute()
    tols = TOLS if online else (None,)
    for m in (0.3, 0.5, 0.7):
        expected = np.mean([np.mean([brute_r1(p, g, m, ts) for ts in tols]) for p, g in CASES.values()])
        key = f"{'oR1' if online else 'R1'}@{m:g}"
        assert values[key].item() == pytest.approx(expected, abs=1e-6), key


@pytest.mark.parametrize("online", [True, False])
def test_map_matches_brute_force(online):
    metric = OnlineMeanAP(tolerances=TOLS, online=online)
    _update(metric)
    values = metric.compute()
    tols = TOLS if online else (None,)
    per_iou = {
        m: np.mean([np.mean([brute_ap(p, g, m, ts) for ts in tols]) for p, g in CASES.values()])
        for m in MAP_IOUS
    }
    prefix = "omAP" if online else "mAP"
    assert values[f"{prefix}@0.5"].item() == pytest.approx(per_iou[0.5], abs=1e-6)
    assert values[f"{prefix}@0.75"].item() == pytest.approx(per_iou[0.75], abs=1e-6)
    assert values[prefix].item() == pytest.approx(np.mean(list(per_iou.values())), abs=1e-6)


def test_hand_computed_values():
    # query 2 alone: top-1 [10, 20] is exact but emitted 2 s after the GT end:
    # beta = 0 (t_s=1), 1/3 (t_s=3), 3/5 (t_s=5) -> oR1@0.5 = (0 + 1/3 + 3/5) / 3
    metric = OnlineRecallAt1(tolerances=TOLS)
    metric.update([torch.tensor(CASES[2][0])], [torch.tensor(CASES[2][1])], torch.tensor([2]))
    assert metric.compute()["oR1@0.5"].item() == pytest.approx((0 + 1 / 3 + 3 / 5) / 3, abs=1e-6)
    # the never-emitted query scores 0 everywhere, offline too
    for online in (True, False):
        m = OnlineMeanAP(online=online)
        m.update([torch.tensor(CASES[3][0])], [torch.tensor(CASES[3][1])], torch.tensor([3]))
        assert m.compute()["omAP" if online else "mAP"].item() == 0.0
    # offline R@1 of query 2 is 1 (exact window)
    off = OnlineRecallAt1(online=False)
    off.update([torch.tensor(CASES[2][0])], [torch.tensor(CASES[2][1])], torch.tensor([2]))
    assert off.compute()["R1@0.5"].item() == 1.0


def test_timeliness_and_interpolation():
    np.testing.assert_allclose(timeliness([4, 10, 11, 13, 20], 10, 3), [1, 1, 2 / 3, 0, 0])
    # precision 1, 0.5, 2/3 at recalls 1/2, 1/2, 1 -> AP = 0.5 * 1 + 0.5 * 2/3
    assert average_precision(np.array([1, 0.5, 2 / 3]), np.array([0.5, 0.5, 1.0])) == pytest.approx(
        0.5 + 1 / 3
    )


def test_matched_by_qid_and_duplicates_count_once():
    a, b = OnlineMeanAP(), OnlineMeanAP()
    _update(a)
    qids = list(CASES)[::-1]  # another order, and query 1 seen twice (e.g. a padded DDP batch)
    b.update(
        [torch.tensor(CASES[q][0]) for q in [*qids, 1]],
        [torch.tensor(CASES[q][1]) for q in [*qids, 1]],
        torch.tensor([*qids, 1]),
    )
    assert a.compute()["omAP"].item() == pytest.approx(b.compute()["omAP"].item())
    ids, rows = b.per_query()
    assert sorted(ids.tolist()) == sorted(CASES) and len(rows) == len(CASES)


def test_reset_and_empty():
    metric = OnlineRecallAt1()
    assert metric.compute()["oR1@0.5"].item() == 0.0
    _update(metric)
    metric.reset()
    assert metric.compute()["oR1@0.5"].item() == 0.0
