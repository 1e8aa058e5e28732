"""The skeleton-emotion configs: every paradigm composes on each experiment with the right network,
and the CPU sizes of the twin are the same whichever way the twin is asked for."""

from __future__ import annotations

import pytest
import yaml

from tests.conftest import CONF

PARADIGMS = {
    "skeleton_majority": (None, "DummyClassifier"),
    "skeleton_rf": (None, "RandomForestClassifier"),
    "skeleton_svm": (None, "SVC"),
    "skeleton_mlp": ("AffectiveMLP", None),
    "skeleton_lstm": ("JointLSTM", None),
    "skeleton_step": ("STEPHybrid", None),
    "skeleton_stgcn": ("STGCN", None),
    "skeleton_stgcnpp": ("STGCNPlusPlus", None),
}


@pytest.mark.parametrize("method", sorted(PARADIGMS))
def test_each_paradigm_picks_its_network(make_cfg, method):
    cfg = make_cfg("experiment=skeleton_emotion_twin", f"method={method}")
    net, estimator = PARADIGMS[method]
    if net is None:
        assert cfg.get("model") is None
        assert cfg.method.estimator._target_.endswith(estimator)
    else:
        assert cfg.model._target_.endswith(f".{net}")
        assert cfg.method._target_.endswith("NeuralEmotionClassifier")


@pytest.mark.parametrize("model", ["stgcn", "stgcnpp", "step_hybrid"])
def test_twin_sizes_are_one_set(model):
    by_data = yaml.safe_load((CONF / "model_scale" / model / "for_twin.yaml").read_text())
    by_experiment = yaml.safe_load(
        (CONF / "model_scale" / model / "experiment" / "for_skeleton_emotion_twin.yaml").read_text()
    )
    assert by_data == by_experiment


def test_twin_sizes_reach_the_networks_only_on_the_twin(make_cfg):
    paper = make_cfg("experiment=skeleton_emotion_egait", "method=skeleton_stgcn")
    twin = make_cfg("experiment=skeleton_emotion_twin", "method=skeleton_stgcn")
    egait_twin = make_cfg(
        "experiment=skeleton_emotion_egait", "method=skeleton_stgcn", "dataset.synthetic=true"
    )
    assert len(paper.model.channels) == 10 and paper.trainer.max_epochs == 1000
    assert list(twin.model.channels) == list(egait_twin.model.channels) == [32, 32, 64, 64]
    assert twin.trainer.max_epochs == egait_twin.trainer.max_epochs == 15
    step = make_cfg("experiment=skeleton_emotion_egait")
    assert step.model.temporal_kernel_size == 75 and step.dataset.batch_size == 8
    pyskl = make_cfg("experiment=skeleton_emotion_pyskl")
    assert pyskl.model._target_.endswith("STGCNPlusPlus") and len(pyskl.model.channels) == 10
    assert pyskl.dataset.num_frames == 100 and pyskl.dataset.max_persons == 2
