"""Training objective, modality cycling, distillation and the cached expert (trained on first use)."""

from __future__ import annotations

import functools
import math

import lightning as L
import pytest
import torch

from runner.methods.ovg_hq.evaluation import query_from_batch
from runner.methods.ovg_hq.expert import load_or_train_expert
from runner.methods.ovg_hq.losses import distillation_loss, focal_loss, kl_divergence, span_l1
from runner.methods.ovg_hq.module import OVGHQModule
from runner.methods.ovg_hq.network import OVGHQNet
from runner.methods.ovg_hq.trivial import TrivialGrounder

SMALL = {"hidden": 32, "num_heads": 2, "ttt_head_dim": 16}


def _module(dm, **kwargs):
    props = dm.network_kwargs()
    net = OVGHQNet(
        feature_dim=props["feature_dim"], window=props["window"], anchors=props["anchors"], **SMALL
    )
    settings = {"optimizer": functools.partial(torch.optim.AdamW, lr=1e-3), "anchors": props["anchors"]}
    settings.update(kwargs)
    return OVGHQModule(net, **settings)


def test_focal_and_l1_by_hand():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    positive = torch.tensor([True, False])
    p_fg = torch.softmax(logits[0], 0)[0]
    p_bg = torch.softmax(logits[1], 0)[1]
    expected = (-0.9 * (1 - p_fg) ** 2 * torch.log(p_fg) - 0.1 * (1 - p_bg) ** 2 * torch.log(p_bg)) / 2
    torch.testing.assert_close(focal_loss(logits, positive), expected)
    spans = torch.tensor([[0.5, 1.0], [3.0, 3.0]])
    targets = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    assert span_l1(spans, targets, positive).item() == pytest.approx(1.5)  # only the positive anchor
    assert span_l1(spans, targets, torch.tensor([False, False])).item() == 0.0


def test_kl_forms():
    s, e = torch.tensor([[1.0, -1.0]]), torch.tensor([[3.0, -2.0]])
    pe, ps = torch.softmax(e / 2, -1), torch.softmax(s / 2, -1)
    assert kl_divergence(s, e, 2.0).item() == pytest.approx((pe * (pe / ps).log()).sum().item(), rel=1e-5)
    qe, qs = torch.softmax(pe, -1), torch.softmax(ps, -1)  # the code's double softmax
    assert kl_divergence(s, e, 2.0, "code").item() == pytest.approx(
        (qe * (qe / qs).log()).sum().item(), rel=1e-5
    )
    assert kl_divergence(s, e, 2.0, "code") < kl_divergence(s, e, 2.0)
    out = {
        "logits": torch.randn(2, 3, 4, 2),
        "spans": torch.randn(2, 3, 4, 2),
        "states": torch.randn(2, 3, 2, 4, 8),
    }
    loss, terms = distillation_loss(out, out)
    assert loss.item() == pytest.approx(0.0, abs=1e-6) and set(terms) == {
        "kl",
        "span_mse",
        "state0_mse",
        "state1_mse",
    }


def test_modality_cycle_feeds_the_right_streams(tiny_datamodule):
    dm = tiny_datamodule()
    module = _module(dm, distill={"enabled": False})
    batch = next(iter(dm.train_dataloader()))
    seen = []
    forward = module.net.forward

    def spy(video, query, **kwargs):
        seen.append((query.text is not None, query.visual is not None))
        return forward(video, query, **kwargs)

    module.net.forward = spy
    module.log = lambda *a, **k: None
    for idx in range(3):
        out = module.training_step(batch, idx)
        assert math.isfinite(out["loss"].item())
    assert seen == [(True, True), (False, True), (True, False)]  # hybrid, visual, text
    q = query_from_batch(batch, "segment_g+text")
    assert q.visual is batch["segment_g"] and q.text is batch["text"]


def test_distillation_trains_and_caches_the_expert_and_honours_debug(tiny_datamodule, tmp_path):
    dm = tiny_datamodule()
    module = _module(
        dm, distill={"expert_training": {"max_epochs": 1, "cache_dir": str(tmp_path / "experts")}}
    )
    debug_trainer = L.Trainer(
        fast_dev_run=1, logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    expert, source = load_or_train_expert(module.net, module.distill_cfg, dm, debug_trainer, module)
    assert source["trained_here"] and source["debug"]["fast_dev_run"] == 1
    assert len(list((tmp_path / "experts").glob("*.pt"))) == 1
    again, source2 = load_or_train_expert(module.net, module.distill_cfg, dm, debug_trainer, module)
    assert source2["path"] == source["path"]  # cached: loaded, not retrained
    for a, b in zip(expert.state_dict().values(), again.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    # a real (non-debug) run would not reuse the one-batch expert
    real_trainer = L.Trainer(
        max_epochs=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_train_batches=1,
    )
    _, source3 = load_or_train_expert(module.net, module.distill_cfg, dm, real_trainer, module)
    assert source3["path"] != source["path"]
    # the expert is frozen and outside the student's checkpoint
    module._expert = [expert.requires_grad_(False)]
    assert not any(k.startswith("_expert") or "expert" in k for k in module.state_dict())
    batch = next(iter(dm.train_dataloader()))
    module.log = lambda *a, **k: None
    out = module.training_step(batch, 0)
    assert "distill" in out["loss_terms"] and math.isfinite(out["loss"].item())


def test_expert_checkpoint_file_is_used(tiny_datamodule, tmp_path):
    dm = tiny_datamodule()
    module = _module(dm)
    expert = module.net.spawn()
    path = tmp_path / "expert.pt"
    torch.save(expert.state_dict(), path)
    distill = dict(module.distill_cfg, expert_checkpoint=str(path))
    loaded, source = load_or_train_expert(module.net, distill, dm, None, module)
    assert not source["trained_here"]
    torch.testing.assert_close(loaded.state_dict()["anchor_queries"], expert.state_dict()["anchor_queries"])


def test_evaluation_conditions_and_trivial_baseline(tiny_datamodule):
    dm = tiny_datamodule()
    batch = next(iter(dm.val_dataloader()))
    module = _module(dm, val_conditions=["text", "image_c+text_c"], test_conditions=["segment_g"])
    module.eval()
    with torch.no_grad():
        preds = module.predictions(batch, "image_c+text_c")
    assert len(preds) == len(batch["qid"]) and all(p.shape[1] == 4 for p in preds)
    trivial = TrivialGrounder(mode="frequent", frequent_length=3)
    preds = trivial.predictions(batch, "text")
    again = trivial.predictions(batch, "text")
    for a, b in zip(preds, again, strict=True):
        assert (a == b).all()  # seeded per query
        assert ((a[:, 1] - a[:, 0])[a[:, 0] > 0] == 6.0).all()  # 3 clips of 2 s (unless clipped at 0)
    with pytest.raises(Exception, match="method.val_conditions"):
        _module(dm, val_conditions=["audio"])
