"""Attacks against byzfl's implementations, and their contracts."""

from __future__ import annotations

import pytest
import torch

from runner.federated.attacks import ALIE, ATTACKS, IPM, Gaussian, LabelFlip, Mimic, SignFlip, ZeroGradient

byzfl = pytest.importorskip("byzfl")


def honest():
    return torch.randn(7, 13, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def test_sign_flip_ipm_mimic_match_byzfl():
    h = honest()
    assert torch.allclose(SignFlip(scale=1.0)(h, 2)[1], torch.as_tensor(byzfl.SignFlipping()(h.numpy())))
    assert torch.allclose(
        IPM(epsilon=0.5)(h, 3)[0], torch.as_tensor(byzfl.InnerProductManipulation(tau=0.5)(h.numpy()))
    )
    assert torch.allclose(Mimic(target=2)(h, 2)[0], torch.as_tensor(byzfl.Mimic(epsilon=2)(h.numpy())))


def test_alie_matches_byzfl_and_paper_z():
    h = honest()
    ours = ALIE(z=1.5)(h, 2)
    assert ours.shape == (2, 13)
    assert torch.allclose(ours[0], torch.as_tensor(byzfl.ALittleIsEnough(tau=-1.5)(h.numpy())))
    # Baruch et al.: n = 50, f = 12 -> s = 14, z = Phi^-1(36/50) ~ 0.58
    assert ALIE.z_max(50, 12) == pytest.approx(0.5828, abs=1e-3)


def test_gaussian_and_zero_gradient():
    h = honest()
    g = Gaussian(sigma=30.0)(h, 4, generator=torch.Generator().manual_seed(0))
    assert g.shape == (4, 13) and 15 < (g - h.mean(0)).std() < 45
    z = ZeroGradient()(h, 3)
    assert torch.allclose(torch.cat([h, z]).sum(0), torch.zeros(13, dtype=torch.float64), atol=1e-12)


def test_label_flip_poisons_data_not_messages():
    attack = LabelFlip()
    assert attack.needs_training
    assert attack.poison_labels(torch.tensor([0, 3, 9]), 10).tolist() == [9, 6, 0]
    own = torch.ones(2, 5)
    assert attack(honest(), 2, own=own) is own


def test_registry_names():
    assert {"none", "sign_flip", "gaussian", "alie", "ipm", "mimic", "label_flip"} <= set(ATTACKS)


def test_alie_is_defined_when_byzantine_clients_are_the_majority():
    z = ALIE.z_max(10, 6)  # s = floor(10/2 + 1) - 6 <= 0: the quantile saturates instead of raising
    assert z > 4
