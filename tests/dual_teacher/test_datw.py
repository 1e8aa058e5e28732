"""DATW on hand-made logits (card: confidence x discrepancy, softmax over teachers)."""

from __future__ import annotations

import math

import pytest
import torch

from runner.methods.dual_teacher.datw import DATW, MeanFusion, normalised_confidence

STUDENT = torch.tensor([[4.0, 0.0, 0.0, 0.0]])  # the student predicts class 0
CONFIDENT_DISAGREEING = torch.tensor([[0.0, 8.0, 0.0, 0.0]])  # sure of class 1
UNSURE = torch.tensor([[0.1, 0.0, 0.2, 0.0]])  # nearly uniform
CONFIDENT_AGREEING = torch.tensor([[8.0, 0.0, 0.0, 0.0]])  # sure of class 0, like the student


@pytest.mark.parametrize("discrepancy", ["cos", "kl"])
def test_confident_disagreeing_teacher_gets_the_larger_weight(discrepancy):
    datw = DATW(discrepancy=discrepancy, tau=0.5)
    w = datw.weights(STUDENT, [CONFIDENT_DISAGREEING, UNSURE])
    assert w.sum(1).item() == pytest.approx(1.0)
    assert w[0, 0] > w[0, 1]
    w = datw.weights(STUDENT, [CONFIDENT_AGREEING, CONFIDENT_DISAGREEING])
    assert w[0, 1] > w[0, 0]


def test_weights_match_the_formula():
    tau = 0.7
    datw = DATW(discrepancy="cos", tau=tau)
    teachers = [CONFIDENT_DISAGREEING, UNSURE]
    scores = []
    for z in teachers:
        p = torch.softmax(z[0], 0).tolist()
        conf = 1 + sum(v * math.log(v) for v in p) / math.log(4)
        zs, zk = STUDENT[0].tolist(), z[0].tolist()
        cos = sum(a * b for a, b in zip(zs, zk, strict=True)) / (math.hypot(*zs) * math.hypot(*zk))
        scores.append(conf * (1 - cos))
    e = [math.exp(s / tau) for s in scores]
    expected = [v / sum(e) for v in e]
    got = datw.weights(STUDENT, teachers)[0].tolist()
    assert got == pytest.approx(expected, rel=1e-5)
    fused, _ = datw(STUDENT, teachers)
    assert fused[0].tolist() == pytest.approx(
        (expected[0] * teachers[0][0] + expected[1] * teachers[1][0]).tolist(), rel=1e-5
    )


def test_weights_sum_to_one_per_sample_and_student_is_detached():
    student = torch.randn(8, 5, requires_grad=True)
    teachers = [torch.randn(8, 5), torch.randn(8, 5) * 3]
    for score in ("confidence_x_discrepancy", "confidence", "discrepancy"):
        w = DATW(score=score).weights(student, teachers)
        assert torch.allclose(w.sum(1), torch.ones(8))
        assert not w.requires_grad


def test_confidence_bounds_and_mean_fusion():
    assert normalised_confidence(torch.zeros(1, 6)).item() == pytest.approx(0.0, abs=1e-6)
    assert normalised_confidence(torch.tensor([[50.0, 0, 0]])).item() == pytest.approx(1.0, abs=1e-4)
    fused, w = MeanFusion()(STUDENT, [CONFIDENT_AGREEING, UNSURE])
    assert torch.allclose(fused, (CONFIDENT_AGREEING + UNSURE) / 2) and torch.allclose(
        w, torch.full((1, 2), 0.5)
    )


def test_bad_discrepancy_is_a_user_error():
    from runner.errors import UserError

    with pytest.raises(UserError):
        DATW(discrepancy="l2")


def test_datw_tau_default_is_the_configs(make_cfg):
    """τ_w: one default, the same in the class and in conf/method/dual_teacher.yaml."""
    import inspect

    cfg = make_cfg("experiment=dual_teacher_hmdb_twin")
    configured = cfg.method.distill.terms.kd.fusion.tau
    assert inspect.signature(DATW).parameters["tau"].default == configured == 0.5
