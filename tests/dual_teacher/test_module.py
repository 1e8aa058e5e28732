"""The distillation module: frozen teachers kept out of the optimizer and the checkpoint, the
loss terms, and the exported student's parameter count."""

from __future__ import annotations

import functools

import pytest
import torch

from runner.errors import UserError
from runner.export import export_student
from runner.methods.dual_teacher import DATW, DualTeacherDistillation, TinyVideoTransformer
from runner.methods.dual_teacher.cache import sha256_file
from runner.methods.dual_teacher.terms import CrossEntropyTerm, KDTerm, RKDTerm, SDDTerm
from runner.models.video import X3D

NUM_CLASSES = 4


def _student(seed=0):
    torch.manual_seed(seed)
    return X3D(num_classes=NUM_CLASSES, width_factor=0.25, depth_factor=0.2, head_dim=32)


def _teacher_specs(tmp_path):
    cnn = functools.partial(X3D, width_factor=0.25, depth_factor=0.2, head_dim=24)
    vit = functools.partial(TinyVideoTransformer, num_frames=4, crop_size=32, dim=16, depth=1, heads=2)
    specs = {}
    for name, ctor in (("cnn", cnn), ("vit", vit)):
        path = tmp_path / f"{name}.pt"
        torch.save(ctor(num_classes=NUM_CLASSES).state_dict(), path)
        specs[name] = {"net": ctor, "checkpoint": str(path), "view": None}
    return specs


def _module(tmp_path, terms=None):
    terms = terms or {
        "ce": CrossEntropyTerm(),
        "kd": KDTerm(teachers=["cnn", "vit"], fusion=DATW()),
        "sdd": SDDTerm(proj_dim=8, feature_module="conv5", sdb_width=8),
        "rkd": RKDTerm(teachers=["cnn", "vit"]),
    }
    module = DualTeacherDistillation(
        student=_student(),
        num_classes=NUM_CLASSES,
        optimizer=functools.partial(torch.optim.SGD, lr=0.1),
        teachers=_teacher_specs(tmp_path),
        distill={"terms": terms, "probe_clip": [4, 32]},
    )
    module.setup("fit")  # no trainer: loads the teachers' checkpoints
    return module


def _batch():
    return {
        "video": torch.randn(3, 3, 4, 32, 32),
        "label": torch.tensor([0, 1, 3]),
        "clip_id": ["x", "y", "z"],
    }


def test_teachers_are_frozen_and_out_of_the_optimizer(tmp_path):
    module = _module(tmp_path)
    module.train()
    assert all(not t.training for t in module.teachers.values())
    assert all(not p.requires_grad for p in module.teachers.parameters())
    optimizer = module.configure_optimizers()
    in_optimizer = {id(p) for g in optimizer.param_groups for p in g["params"]}
    assert not in_optimizer & {id(p) for p in module.teachers.parameters()}
    assert {id(p) for p in module.student.parameters()} <= in_optimizer
    assert {id(p) for p in module.terms["sdd"].sdb.parameters()} <= in_optimizer


def test_training_step_gives_gradients_to_student_and_sdb_only(tmp_path):
    module = _module(tmp_path)
    module.train()
    out = module.training_step(_batch(), 0)
    assert set(out["loss_terms"]) == {"ce", "kd", "sdd", "rkd"}
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert all(p.grad is None for p in module.teachers.parameters())
    assert module.student.stem[0].weight.grad is not None
    assert module.terms["sdd"].sdb.head.weight.grad is not None


def test_sdd_gradient_reaches_the_student_backbone_through_the_hook(tmp_path):
    module = _module(tmp_path, {"sdd": SDDTerm(proj_dim=8, feature_module="conv5", sdb_width=8)})
    module.train()
    module.training_step(_batch(), 0)["loss"].backward()
    assert module.student.conv5[0].weight.grad.abs().sum() > 0
    assert module.student.classifier.weight.grad is None  # the SDB branch does not use the head


def test_weighted_sum_of_named_terms(tmp_path):
    module = _module(
        tmp_path, {"ce": CrossEntropyTerm(weight=1.0), "kd": KDTerm(weight=0.5, teachers=["vit"])}
    )
    assert list(module.teachers) == ["vit"]  # only the teachers a term names are built
    module.eval()  # no dropout: the same batch gives the same values
    torch.manual_seed(0)
    out = module.training_step(_batch(), 0)
    terms = out["loss_terms"]
    assert out["loss"].item() == pytest.approx(terms["ce"].item() + 0.5 * terms["kd"].item(), rel=1e-6)


def test_distill_scale_multiplies_the_terms_that_read_a_teacher(tmp_path):
    terms = {"ce": CrossEntropyTerm(weight=0.5), "kd": KDTerm(weight=0.5, teachers=["vit"])}
    module = _module(tmp_path, terms)
    module.distill_scale = 0.2
    assert (module.term_weight("ce"), module.term_weight("kd")) == (0.5, pytest.approx(0.1))
    module.eval()
    out = module.training_step(_batch(), 0)
    terms = out["loss_terms"]
    assert out["loss"].item() == pytest.approx(0.5 * terms["ce"].item() + 0.1 * terms["kd"].item(), rel=1e-6)
    with pytest.raises(UserError, match="method.distill.scale"):
        DualTeacherDistillation(
            student=_student(),
            num_classes=NUM_CLASSES,
            optimizer=functools.partial(torch.optim.SGD, lr=0.1),
            teachers=_teacher_specs(tmp_path),
            distill={"terms": {"ce": CrossEntropyTerm()}, "scale": -1},
        )


def test_checkpoint_has_no_teachers_but_their_hashes(tmp_path):
    module = _module(tmp_path)
    sd = module.state_dict()
    assert sd and not any(k.startswith("teachers.") for k in sd)
    module.load_state_dict(sd, strict=True)  # loads without the teachers
    checkpoint = {"state_dict": sd}
    module.on_save_checkpoint(checkpoint)
    for name in ("cnn", "vit"):
        source = checkpoint["teachers"][name]
        assert source["sha256"] == sha256_file(source["path"])


def test_export_drops_the_sdb_and_matches_the_student_alone(tmp_path):
    module = _module(tmp_path)
    checkpoint = {"state_dict": module.state_dict()}
    module.on_save_checkpoint(checkpoint)
    assert any(k.startswith("terms.sdd.sdb.") for k in checkpoint["state_dict"])
    torch.save(checkpoint, tmp_path / "run.ckpt")
    meta = export_student(tmp_path / "run.ckpt", tmp_path / "student.pt")
    alone = _student(seed=1)
    assert meta["num_parameters"] == sum(p.numel() for p in alone.parameters())
    exported = torch.load(tmp_path / "student.pt", weights_only=True)["state_dict"]
    alone.load_state_dict(exported, strict=True)  # exactly the student's tensors, nothing more
    assert torch.equal(alone.classifier.weight, module.student.classifier.weight)


def test_a_teacher_without_checkpoint_and_without_training_is_a_user_error(tmp_path):
    from runner.errors import UserError

    specs = _teacher_specs(tmp_path)
    specs["vit"]["checkpoint"] = None
    module = DualTeacherDistillation(
        student=_student(),
        num_classes=NUM_CLASSES,
        optimizer=functools.partial(torch.optim.SGD, lr=0.1),
        teachers=specs,
        distill={"terms": {"kd": KDTerm(teachers=["vit"])}, "teacher_training": {"enabled": False}},
    )
    with pytest.raises(UserError, match="teachers.vit.checkpoint"):
        module.setup("fit")
