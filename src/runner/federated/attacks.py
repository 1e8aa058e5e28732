"""Byzantine attacks on a round's messages (and one data-poisoning attack).

A model attack is called with the honest messages of the round (omniscient attacker: it sees all of
them, ``(h, d)``) and returns the ``(b, d)`` messages the ``b`` Byzantine clients send. A data attack
(:class:`LabelFlip`) instead changes the labels the Byzantine clients train on; they then send what
that training produced.

:data:`ATTACKS` maps config names (``fl_strategy.attack``) to attack classes; their options come from
``fl_strategy.attack_options.<name>``.

References: sign flipping and Gaussian as in Byrd-SAGA (Wu et al., IEEE TSP 2020; the card:
``−3 × honest mean`` and ``honest mean + 30·N(0, I)``), zero gradient (ibid.), ALIE (Baruch et al.,
NeurIPS 2019), IPM (Xie et al., UAI 2019), mimic (Karimireddy et al., ICLR 2022), label flipping
(``y → C − 1 − y``, Allen-Zhu et al. 2021 and many others).
"""

from __future__ import annotations

import math
from statistics import NormalDist

import torch

__all__ = ["ATTACKS", "ALIE", "Attack", "Gaussian", "IPM", "LabelFlip", "Mimic", "NoAttack", "SignFlip"]


class Attack:
    """Base: no data poisoning, Byzantine clients need no local training."""

    needs_training = False  # Byzantine clients must run local training (data attacks)

    def poison_labels(self, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
        return labels

    def __call__(
        self,
        honest: torch.Tensor,
        num_byzantine: int,
        own: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        raise NotImplementedError


class NoAttack(Attack):
    """Byzantine clients behave honestly (they train and send their true message)."""

    needs_training = True

    def __call__(self, honest, num_byzantine, own=None, generator=None):
        return own


class SignFlip(Attack):
    """Every Byzantine client sends ``−scale × mean(honest)``."""

    def __init__(self, scale: float = 3.0) -> None:
        self.scale = float(scale)

    def __call__(self, honest, num_byzantine, own=None, generator=None):
        return (-self.scale * honest.mean(dim=0)).expand(num_byzantine, -1).clone()


class Gaussian(Attack):
    """``mean(honest) + σ·N(0, I)`` per Byzantine client (``around_mean=False``: ``N(0, σ²I)``)."""

    def __init__(self, sigma: float = 30.0, around_mean: bool = True) -> None:
        self.sigma = float(sigma)
        self.around_mean = bool(around_mean)

    def __call__(self, honest, num_byzantine, own=None, generator=None):
        noise = torch.randn(
            num_byzantine, honest.shape[1], generator=generator, dtype=honest.dtype, device="cpu"
        ).to(honest.device)
        centre = honest.mean(dim=0) if self.around_mean else torch.zeros_like(honest[0])
        return centre + self.sigma * noise


class ZeroGradient(Attack):
    """Byzantine clients send ``−Σ honest / b`` so that the plain sum of all messages is zero."""

    def __call__(self, honest, num_byzantine, own=None, generator=None):
        return (-honest.sum(dim=0) / num_byzantine).expand(num_byzantine, -1).clone()


class ALIE(Attack):
    """A little is enough (Baruch et al. 2019): ``μ − z·σ`` per coordinate (σ: sample std of the honest
    messages). ``z`` None: the paper's ``z_max = Φ⁻¹((n − s)/n)`` with ``s = ⌊n/2 + 1⌋ − f``."""

    def __init__(self, z: float | None = None) -> None:
        self.z = z

    @staticmethod
    def z_max(n: int, f: int) -> float:
        s = math.floor(n / 2 + 1) - f
        # s <= 0 (f at or above half the clients, only reachable with an unbounded rule such as mean):
        # the quantile saturates; clamp it inside (0, 1) so the attack stays defined
        return NormalDist().inv_cdf(min((n - s) / n, 1 - 1e-6))

    def __call__(self, honest, num_byzantine, own=None, generator=None):
        n = honest.shape[0] + num_byzantine
        z = self.z_max(n, num_byzantine) if self.z is None else float(self.z)
        spread = honest.std(dim=0, unbiased=True) if honest.shape[0] > 1 else torch.zeros_like(honest[0])
        return (honest.mean(dim=0) - z * spread).expand(num_byzantine, -1).clone()


class IPM(Attack):
    """Inner-product manipulation (Xie et al. 2019): every Byzantine client sends ``−ε·mean(honest)``."""

    def __init__(self, epsilon: float = 0.1) -> None:
        self.epsilon = float(epsilon)

    def __call__(self, honest, num_byzantine, own=None, generator=None):
        return (-self.epsilon * honest.mean(dim=0)).expand(num_byzantine, -1).clone()


class Mimic(Attack):
    """Mimic (Karimireddy et al. 2022): every Byzantine client copies the honest message ``target``
    (an index into the round's honest clients), over-representing one client under heterogeneity."""

    def __init__(self, target: int = 0) -> None:
        self.target = int(target)

    def __call__(self, honest, num_byzantine, own=None, generator=None):
        return honest[self.target % honest.shape[0]].expand(num_byzantine, -1).clone()


class LabelFlip(Attack):
    """Data poisoning: Byzantine clients train on ``y → C − 1 − y`` and send that honest-looking update."""

    needs_training = True

    def poison_labels(self, labels, num_classes):
        return num_classes - 1 - labels

    def __call__(self, honest, num_byzantine, own=None, generator=None):
        return own


ATTACKS: dict[str, type[Attack]] = {
    "none": NoAttack,
    "sign_flip": SignFlip,
    "gaussian": Gaussian,
    "zero_gradient": ZeroGradient,
    "alie": ALIE,
    "ipm": IPM,
    "mimic": Mimic,
    "label_flip": LabelFlip,
}
