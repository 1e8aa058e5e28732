"""FedPall (arXiv 2507.04781, ICCV 2025): prototype-based adversarial and collaborative learning."""

from runner.methods.fedpall.strategy import FedPall, fedpall_objective

__all__ = ["FedPall", "fedpall_objective"]
