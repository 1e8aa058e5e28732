"""A teacher pretrained on another dataset, then fine-tuned (the paper's Kinetics-pretrained teachers;
on the twin: the Kinetics-400 twin, then the HMDB51 twin): both stages cached, the fine-tuning starts
from the pretrained backbone with a fresh classifier, and the stages honour the debug mode."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from runner.methods.dual_teacher import teacher_training
from runner.methods.dual_teacher.teacher_training import load_pretrained_backbone, pretraining_recipe
from runner.train import run
from tests.test_experiments_fdr import SMOKE


class TwoPart(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.body = nn.Linear(4, 3)
        self.classifier = nn.Linear(3, num_classes)


def test_pretrained_backbone_loads_all_but_the_classifier(tmp_path):
    torch.manual_seed(0)
    pretrained = TwoPart(5)
    path = tmp_path / "pre.pt"
    torch.save({"state_dict": pretrained.state_dict(), "meta": {}}, path)
    for classes in (5, 3):  # the pretraining's classifier is dropped even when the class count agrees
        fresh = TwoPart(classes)
        head = fresh.classifier.weight.clone()
        load_pretrained_backbone(fresh, path)
        assert torch.equal(fresh.body.weight, pretrained.body.weight)
        assert torch.equal(fresh.classifier.weight, head)
    other = nn.Sequential(nn.Linear(4, 3))
    with pytest.raises(RuntimeError, match="does not match"):
        load_pretrained_backbone(other, path)


def test_pretraining_recipe_replaces_only_what_the_block_gives():
    recipe = {"max_epochs": 30, "optimizer": "sgd", "seed": 0}
    out = pretraining_recipe(recipe, {"data": object(), "max_epochs": 20})
    assert out == {"max_epochs": 20, "optimizer": "sgd", "seed": 0}


def test_vit_teacher_is_pretrained_then_fine_tuned_and_both_are_cached(make_cfg, tmp_path, monkeypatch):
    cache = tmp_path / "teachers"
    overrides = (
        "experiment=dual_teacher_hmdb_twin",
        *SMOKE,
        "method=kd_vit",
        f"method.distill.teacher_training.cache_dir={cache}",
    )
    cfg = make_cfg(*overrides)
    run(cfg)
    metas = {p.stem: torch.load(p, weights_only=True)["meta"] for p in cache.glob("*.pt")}
    names = sorted(m["name"] for m in metas.values())
    assert names == ["student alone", "teacher vit", "teacher vit pretraining"]
    pretraining = next(k for k, m in metas.items() if m["name"] == "teacher vit pretraining")
    finetuned = next(m for m in metas.values() if m["name"] == "teacher vit")
    assert Path(finetuned["init"]).stem == pretraining  # fine-tuned from the pretrained checkpoint
    metrics = json.loads((Path(cfg.paths.output_dir) / "metrics.json").read_text())["metrics"]
    assert "test/teacher_vit_acc" in metrics

    def no_training(*args, **kwargs):
        raise AssertionError("a cached teacher stage was trained again")

    monkeypatch.setattr(teacher_training, "train_supervised", no_training)
    run(make_cfg(*overrides, root=tmp_path / "again"))  # every stage comes from the cache
