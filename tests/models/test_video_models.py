"""Tests for runner.models.video (tiny inputs; the whole file runs in well under a minute on CPU)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import torchvision.models.video as tv_video
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from runner.errors import UserError
from runner.models.checkpoint import load_local_weights
from runner.models.video import (
    X3D,
    X3D_INPUTS,
    FrameTimmNet,
    TemporalShiftConv2d,
    TorchvisionVideoNet,
    temporal_shift,
)

CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "model"
NC = 5


def _clip(b=2, t=4, s=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 3, t, s, s, generator=g)


def _check_interface(net: nn.Module, x: torch.Tensor, nc: int = NC) -> None:
    net.eval()
    with torch.no_grad():
        f = net.forward_features(x)
        z = net(x)
    assert f.shape == (x.shape[0], net.feature_dim)
    assert z.shape == (x.shape[0], nc)
    torch.testing.assert_close(net.classify(f), z)


def _n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# ---------------------------------------------------------------- X3D


@pytest.mark.parametrize("variant", ["s", "m"])
def test_x3d_param_count_matches_paper(variant):
    n = _n_params(X3D(num_classes=400, variant=variant))
    assert 3.0e6 < n < 4.5e6  # paper Table 3: 3.8M for X3D-S and X3D-M
    assert X3D_INPUTS[variant]["frames"] == {"s": 13, "m": 16}[variant]


def test_x3d_interface_and_zero_gamma():
    net = X3D(num_classes=NC, width_factor=0.5, depth_factor=0.34)
    assert net.feature_dim == 2048 and net.depths == [1, 2, 4, 2]
    _check_interface(net, _clip())
    for blk in (b for stage in net.stages for b in stage):
        assert torch.all(blk.bn_c.weight == 0)
        assert torch.all(blk.bn_a.weight == 1)


def test_x3d_invalid_variant():
    with pytest.raises(UserError, match="model.variant"):
        X3D(num_classes=NC, variant="q")


def test_x3d_shrunk_trains():
    torch.manual_seed(0)
    net = X3D(num_classes=NC, width_factor=0.5, depth_factor=0.34, head_dim=128, dropout=0.0)
    x, y = _clip(b=4, t=4, s=32), torch.tensor([0, 1, 2, 3])
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for _ in range(20):
        loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


# ---------------------------------------------------------------- torchvision


@pytest.mark.parametrize("arch", ["r3d_18", "r2plus1d_18", "mc3_18"])
def test_torchvision_resnets_forward(arch):
    net = TorchvisionVideoNet(arch=arch, num_classes=NC)
    assert net.feature_dim == 512
    _check_interface(net, _clip(b=2, t=4, s=32))


def test_torchvision_split_matches_original_r3d(tmp_path):
    """An original torchvision state_dict loads and the split model reproduces its logits."""
    torch.manual_seed(0)
    ref = tv_video.r3d_18(weights=None, num_classes=NC).eval()
    path = tmp_path / "r3d.pt"
    torch.save(ref.state_dict(), path)
    net = TorchvisionVideoNet(arch="r3d_18", num_classes=NC, checkpoint=str(path)).eval()
    x = _clip(b=1, t=4, s=32)
    with torch.no_grad():
        torch.testing.assert_close(net(x), ref(x))


def test_s3d_head_split_matches_original(tmp_path):
    torch.manual_seed(0)
    ref = tv_video.s3d(weights=None, num_classes=NC).eval()
    torch.save({"state_dict": ref.state_dict()}, tmp_path / "s3d.pt")
    net = TorchvisionVideoNet(arch="s3d", num_classes=NC, checkpoint=str(tmp_path / "s3d.pt"))
    assert net.feature_dim == 1024 and net.dropout.p == 0.2
    x = _clip(b=1, t=8, s=64)  # smallest clip s3d accepts; pooled by the fallback global mean
    _check_interface(net, x)
    with torch.no_grad():
        # the original head (1x1x1 conv, then mean) on the globally pooled map; the original
        # (2, 7, 7) avgpool itself needs 16x224x224 clips, too slow here
        pooled = ref.features(x).mean(dim=(2, 3, 4), keepdim=True)
        torch.testing.assert_close(net(x), ref.classifier(pooled).flatten(1), rtol=1e-4, atol=1e-5)


def test_swin3d_head_split(tmp_path):
    torch.manual_seed(0)
    ref = tv_video.swin3d_t(weights=None, num_classes=NC).eval()
    torch.save(ref.state_dict(), tmp_path / "swin.pt")
    net = TorchvisionVideoNet(arch="swin3d_t", num_classes=NC, checkpoint=str(tmp_path / "swin.pt"))
    assert net.feature_dim == 768 and isinstance(net.backbone.head, nn.Identity)
    x = _clip(b=1, t=2, s=32)
    _check_interface(net, x)
    with torch.no_grad():
        torch.testing.assert_close(net(x), ref(x))


def test_mvit_construction_and_head_split():
    """mvit_v2_s needs 16x224x224 clips, too slow for this file: check the head split only."""
    net = TorchvisionVideoNet(arch="mvit_v2_s", num_classes=NC)
    assert net.feature_dim == 768 and net.dropout.p == 0.5
    assert isinstance(net.backbone.head, nn.Identity)
    assert net.classifier.in_features == net.backbone.norm.normalized_shape[0]
    net.eval()
    f = torch.randn(3, net.feature_dim)
    assert net.classify(f).shape == (3, NC)
    # original head keys ("head.1.*") are mapped onto the classifier
    sd = net._checkpoint_key_map({"head.1.weight": torch.zeros(NC, 768), "conv_proj.weight": torch.zeros(1)})
    assert set(sd) == {"classifier.weight", "backbone.conv_proj.weight"}


def test_torchvision_invalid_arch():
    with pytest.raises(UserError, match="model.arch"):
        TorchvisionVideoNet(arch="r3d_50", num_classes=NC)


# ---------------------------------------------------------------- frames / TSM


def test_temporal_shift_hand_made():
    b, t, c = 2, 3, 8  # fold = 1 channel per direction
    x = torch.arange(b * t * c, dtype=torch.float32).view(b * t, c, 1, 1) + 1
    out = temporal_shift(x, num_frames=t, shift_fraction=1 / 8).view(b, t, c)
    v = x.view(b, t, c)
    # channel 0: frame i gets frame i+1, zero at the last frame
    torch.testing.assert_close(out[:, :-1, 0], v[:, 1:, 0])
    assert torch.all(out[:, -1, 0] == 0)
    # channel 1: frame i gets frame i-1, zero at the first frame
    torch.testing.assert_close(out[:, 1:, 1], v[:, :-1, 1])
    assert torch.all(out[:, 0, 1] == 0)
    # other channels unchanged; clips do not leak into each other
    torch.testing.assert_close(out[:, :, 2:], v[:, :, 2:])
    assert out[0, -1, 0] == 0 and out[1, 0, 1] == 0


def test_tsm_model_uses_actual_frame_count():
    torch.manual_seed(0)
    net = FrameTimmNet(backbone="resnet18", num_classes=NC, temporal="tsm", num_segments=8)
    for m in net.modules():  # timm zero-inits each block's last BN, which would hide the shift
        if isinstance(m, nn.BatchNorm2d):
            m.weight.data.uniform_(0.5, 1.5)
    shifts = [m for m in net.modules() if isinstance(m, TemporalShiftConv2d)]
    assert len(shifts) == 8  # resnet18: 2+2+2+2 BasicBlocks
    assert net.feature_dim == 512
    _check_interface(net, _clip(b=2, t=3, s=32))  # T=3 != num_segments
    assert all(m.num_frames == 3 for m in shifts)
    # the shift changes the output compared with the same weights without it
    avg = FrameTimmNet(backbone="resnet18", num_classes=NC, temporal="avg").eval()
    avg.load_state_dict(net.state_dict())  # same keys: the shift conv keeps conv1's names
    x = _clip(b=1, t=3, s=32)
    with torch.no_grad():
        assert not torch.allclose(avg(x), net(x))


def test_frames_avg_forward():
    net = FrameTimmNet(backbone="resnet18", num_classes=NC, temporal="avg")
    _check_interface(net, _clip(b=2, t=2, s=32))


def test_frame_invalid_temporal_and_tsm_backbone():
    with pytest.raises(UserError, match="model.temporal"):
        FrameTimmNet(backbone="resnet18", num_classes=NC, temporal="lstm")
    with pytest.raises(UserError, match="timm ResNet"):
        FrameTimmNet(backbone="mobilenetv3_small_050", num_classes=NC, temporal="tsm")


# ---------------------------------------------------------------- checkpoints


def _tiny_x3d(nc=NC):
    return X3D(num_classes=nc, width_factor=0.5, depth_factor=0.34, head_dim=64).eval()


def test_checkpoint_round_trip_with_module_prefix(tmp_path):
    torch.manual_seed(0)
    src = _tiny_x3d()
    for p in src.parameters():  # make every weight (incl. zero-init gammas) non-trivial
        p.data.normal_(0, 0.1)
    path = tmp_path / "ddp.pt"
    torch.save({"model": {"module." + k: v for k, v in src.state_dict().items()}, "epoch": 3}, path)
    dst = X3D(num_classes=NC, width_factor=0.5, depth_factor=0.34, head_dim=64, checkpoint=str(path)).eval()
    x = _clip(b=1, t=4, s=32)
    with torch.no_grad():
        torch.testing.assert_close(dst(x), src(x))


def test_checkpoint_lightning_prefix_and_head_mismatch(tmp_path, caplog):
    src = _tiny_x3d(nc=7)
    path = tmp_path / "lit.ckpt"
    torch.save({"state_dict": {"net." + k: v for k, v in src.state_dict().items()}}, path)
    dst = _tiny_x3d(nc=NC)
    init_head = dst.classifier.weight.clone()
    with caplog.at_level(logging.WARNING, logger="runner.models.checkpoint"):
        load_local_weights(dst, str(path))
    assert "classifier.weight" in caplog.text
    torch.testing.assert_close(dst.classifier.weight, init_head)
    torch.testing.assert_close(dst.stem[0].weight, src.stem[0].weight)
    with pytest.raises(UserError, match="classifier.weight"):
        load_local_weights(_tiny_x3d(nc=NC), str(path), strict_head=True)


def test_checkpoint_backbone_mismatch_and_unrelated(tmp_path):
    path = tmp_path / "other.pt"
    torch.save(X3D(num_classes=NC, width_factor=0.25, depth_factor=0.34, head_dim=64).state_dict(), path)
    with pytest.raises(UserError, match="shape"):
        load_local_weights(_tiny_x3d(), str(path))
    torch.save({"foo.weight": torch.zeros(2)}, tmp_path / "foo.pt")
    with pytest.raises(UserError, match="no parameter names"):
        load_local_weights(_tiny_x3d(), str(tmp_path / "foo.pt"))


def test_missing_checkpoint_path():
    missing = "/nonexistent/dir/weights.pt"
    with pytest.raises(UserError, match="model.checkpoint") as ei:
        X3D(num_classes=NC, width_factor=0.5, depth_factor=0.34, checkpoint=missing)
    assert missing in str(ei.value)


def test_timm_checkpoint_loads_into_tsm(tmp_path):
    """A plain timm resnet18 state_dict (with a 1000-class fc) loads into the TSM model."""
    import timm

    ref = timm.create_model("resnet18", pretrained=False)
    torch.save(ref.state_dict(), tmp_path / "r18.pt")
    net = FrameTimmNet(
        backbone="resnet18", num_classes=NC, temporal="tsm", checkpoint=str(tmp_path / "r18.pt")
    )
    torch.testing.assert_close(net.backbone.layer1[0].conv1.weight, ref.layer1[0].conv1.weight)


# ---------------------------------------------------------------- configs

# the video backbones among conf/model/ (other areas keep their own networks there too)
CONFIGS = sorted(p for p in CONF_DIR.glob("*.yaml") if "runner.models.video" in p.read_text())
# forward at a tiny size for the configs that support it cheaply
FORWARD_INPUT = {"s3d": (1, 8, 64), "mvit_v2_s": None, "swin3d_t": (1, 2, 32), "tsm_resnet50": (1, 2, 32)}


def test_configs_exist():
    names = {p.stem for p in CONFIGS}
    assert {
        "x3d_s",
        "x3d_m",
        "r3d_18",
        "r2plus1d_18",
        "mc3_18",
        "s3d",
        "mvit_v2_s",
        "swin3d_t",
        "tsm_resnet50",
        "frames_resnet18",
    } <= names


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_instantiates(path):
    cfg = OmegaConf.load(path)
    assert "num_classes" not in cfg
    net = instantiate(cfg, num_classes=NC)
    assert isinstance(net.feature_dim, int)
    size = FORWARD_INPUT.get(path.stem, (1, 4, 32))
    if size is not None:
        b, t, s = size
        _check_interface(net, _clip(b=b, t=t, s=s))
