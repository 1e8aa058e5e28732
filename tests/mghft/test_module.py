"""MGHFT's network, switches, fusion block and recipe; the baselines' forward passes."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from runner.errors import UserError
from runner.methods.mghft import (
    MGHFT,
    CLIPLinearProbe,
    LateFusion,
    MajorityClass,
    TextGuidedFusionBlock,
    TextOnlyMLP,
    VisualOnlyPVT,
)
from runner.models.vision import PyramidVisionTransformer

TEXT_DIM = 12


def pvt(size: int = 64) -> PyramidVisionTransformer:
    torch.manual_seed(0)
    return PyramidVisionTransformer(img_size=size, embed_dims=(8, 16, 40, 64), depths=(1, 1, 1, 1))


def batch(n: int = 6, size: int = 64) -> dict:
    g = torch.Generator().manual_seed(1)
    return {
        "image": torch.randn(n, 3, size, size, generator=g),
        "views": torch.randn(n, 4, TEXT_DIM, generator=g),
        "full_text": torch.randn(n, TEXT_DIM, generator=g),
        "label": torch.arange(n) % 7,
    }


def mghft(size: int = 64, **kwargs) -> MGHFT:
    return MGHFT(pvt(size), num_classes=7, text_dim=TEXT_DIM, image_size=size, **kwargs)


def test_mghft_forward_backward_and_sizes():
    model = mghft()
    # alpha 8 at 448 px -> 1 at 64 px: k per head = 64 / 16 / 4 / 1, x heads 1 / 2 / 5 / 8
    assert model.alpha == 1 and model.tokens_per_stage == [64, 32, 20, 8]
    assert model.pos_embed.shape == (1, 4 + 124, 96)  # fusion width 1.5 x 64
    assert all(model.backbone.stage_cls)
    logits, aux = model.logits_and_aux(batch())
    assert logits.shape == (6, 7) and aux.ndim == 0 and torch.isfinite(aux)
    (logits.sum() + aux).backward()
    assert model.backbone.cls_token1.grad is not None and model.l_proj.weight.grad.abs().sum() > 0


def test_alpha_at_the_reference_size_is_the_papers():
    model = MGHFT(pvt(), 7, TEXT_DIM, image_size=448, hidden_dim=24, fusion_heads=2)
    assert model.alpha == 8 and model.tokens_per_stage == [512, 256, 160, 64]
    fixed = MGHFT(pvt(), 7, TEXT_DIM, image_size=64, alpha=2, alpha_reference_size=None)
    assert fixed.alpha == 2 and fixed.tokens_per_stage == [128, 64, 40, 16]


def test_switches_change_what_the_model_uses():
    data = batch(size=32)
    no_lra = mghft(32, local_tokens=False)
    assert no_lra.pos_embed.shape[1] == 4 and no_lra.logits_and_aux(data)[0].shape == (6, 7)
    assert mghft(32, stage_losses=False).logits_and_aux(data)[1] is None
    assert mghft(32, fusion=False).fusion is None and mghft(32, fusion=False).logits_and_aux(data)[
        0
    ].shape == (6, 7)
    per_view, full_text = mghft(32).eval(), mghft(32, text_views="full_text").eval()
    changed = dict(data, views=torch.randn(6, 4, TEXT_DIM))
    with torch.no_grad():
        assert not torch.allclose(per_view(data), per_view(changed))
        torch.testing.assert_close(full_text(data), full_text(changed))  # views unused: only the whole text
        assert not torch.allclose(full_text(data), full_text(dict(data, full_text=torch.randn(6, TEXT_DIM))))
    release = mghft(32, kl_reduction="sum")
    assert release.logits_and_aux(data)[1] > mghft(32).logits_and_aux(data)[1]
    with pytest.raises(UserError, match="text_views"):
        mghft(32, text_views="both")
    with pytest.raises(UserError, match="view descriptions"):
        MGHFT(pvt(32), 7, text_dim=0, image_size=32)


def test_fusion_block_matches_a_hand_written_double_attention():
    torch.manual_seed(0)
    block = TextGuidedFusionBlock(dim=8, num_heads=2, mlp_dim=16, dropout=0.0).eval()
    visual, text = torch.randn(3, 5, 8), torch.randn(3, 4, 8)
    x = block.attention_norm(visual)
    out = []
    for h in range(2):
        sl = slice(4 * h, 4 * h + 4)

        def proj(layer, inp, sl=sl):
            return (inp @ layer.weight.T + layer.bias)[..., sl]

        q, kv, vv = proj(block.query, x), proj(block.key, x), proj(block.value, x)
        kt, vt = proj(block.key, text), proj(block.value, text)
        text_ctx = torch.softmax(q @ kt.transpose(1, 2) / math.sqrt(4), -1) @ vt
        out.append(torch.softmax(text_ctx @ kv.transpose(1, 2) / math.sqrt(4), -1) @ vv)
    expected = visual + block.out(torch.cat(out, -1))
    expected = expected + block.ffn(block.ffn_norm(expected))
    torch.testing.assert_close(block(visual, text), expected)
    torch.testing.assert_close(block(visual, text, num_queries=1), expected[:, :1])


def test_recipe_lr_scaling_and_schedule():
    model = mghft()
    model._trainer = SimpleNamespace(
        datamodule=SimpleNamespace(batch_size=32), world_size=2, accumulate_grad_batches=2, max_epochs=50
    )
    assert model.global_batch_size() == 128
    assert model.scaled_lr() == pytest.approx(1e-3 * 128 / 512)
    config = model.configure_optimizers()
    optimizer, scheduler = config["optimizer"], config["lr_scheduler"]["scheduler"]
    decay, no_decay = optimizer.param_groups
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim <= 1 for p in no_decay["params"])
    lrs = []
    for epoch in range(51):
        scheduler.step(epoch=epoch)
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs[0] == pytest.approx(1e-5)  # warm-up from 1e-5 ...
    assert lrs[4] == pytest.approx(1e-5 + 4 / 5 * (2.5e-4 - 1e-5))  # linear warm-up over 5 epochs
    # then timm's cosine over the 50 epochs (counted from epoch 0, as in the release)
    assert lrs[5] == pytest.approx(1e-5 + 0.5 * (2.5e-4 - 1e-5) * (1 + math.cos(math.pi * 5 / 50)))
    assert lrs[50] == pytest.approx(1e-5, rel=0.05) and lrs[30] < lrs[10]  # cosine down to the floor


def test_training_step_is_label_smoothed_ce_plus_half_the_stage_losses():
    model = mghft(fusion_dropout=0.0).eval()
    data = batch()
    torch.manual_seed(0)
    logits, aux = model.logits_and_aux(data)
    ce = torch.nn.functional.cross_entropy(logits, data["label"], label_smoothing=0.2)
    model.log = lambda *a, **k: None
    torch.manual_seed(0)
    out = model.training_step(data, 0)
    torch.testing.assert_close(out["loss"], ce + 0.5 * aux)
    correct = (logits.argmax(1) == data["label"]).float().mean()
    torch.testing.assert_close(model.train_metrics.compute()["train/acc"], correct)  # the tables' train/acc


def test_baselines_forward():
    data = batch()
    for model in (
        VisualOnlyPVT(pvt(), 7),
        TextOnlyMLP(7, TEXT_DIM, hidden_dim=16, net=pvt()),
        LateFusion(pvt(), 7, TEXT_DIM, hidden_dim=16),
    ):
        logits, aux = model.logits_and_aux(data)
        assert logits.shape == (6, 7) and aux is None
        logits.sum().backward()
    assert not hasattr(TextOnlyMLP(7, TEXT_DIM, net=pvt()), "backbone")  # the unused backbone is not kept
    with pytest.raises(UserError, match="view descriptions"):
        TextOnlyMLP(7, 0)


def test_majority_class_predicts_the_most_frequent_training_class():
    model = MajorityClass(7, class_counts=[5, 30, 2, 0, 1, 1, 1])
    assert model(batch()).argmax(1).tolist() == [1] * 6


def test_clip_probe_with_a_random_tower_trains_only_its_head(tmp_path):
    model = CLIPLinearProbe(7, image_size=64, clip_model="ViT-S-32", clip_checkpoint=None)
    model.train()
    assert not model.visual.training
    trainable = [n for n, _ in model.trainable_parameters()]
    assert trainable == ["head.weight", "head.bias"]
    logits, _ = model.logits_and_aux(batch(2))
    assert logits.shape == (2, 7)
    with pytest.raises(UserError, match="not found"):
        CLIPLinearProbe(7, 64, "ViT-S-32", clip_checkpoint=str(tmp_path / "missing.bin"))


def test_checkpoint_of_a_config_built_module_loads_with_weights_only(tmp_path):
    """Modules built from config get OmegaConf containers (class names, optimizer); once runner.train
    has made their hyperparameters plain (make_hparams_plain), the checkpoint ``test_ckpt=best``
    reloads loads with weights_only=True (it refused ListConfig)."""
    import lightning as L
    from omegaconf import OmegaConf

    from runner.checkpointing import load_checkpoint, make_hparams_plain

    model = MajorityClass(
        3,
        class_counts=OmegaConf.create([5, 30, 2]),
        class_names=OmegaConf.create(["a", "b", "c"]),
        optimizer=OmegaConf.create({"lr": 1e-3}),
    )
    make_hparams_plain(model)
    trainer = L.Trainer(logger=False, enable_checkpointing=False, default_root_dir=str(tmp_path))
    trainer.strategy.connect(model)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    loaded = torch.load(path, map_location="cpu", weights_only=True)
    assert loaded["hyper_parameters"]["class_names"] == ["a", "b", "c"]
    assert load_checkpoint(path)["hyper_parameters"]["optimizer"] == {"lr": 1e-3}
