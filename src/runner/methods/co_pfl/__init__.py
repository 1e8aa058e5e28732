"""CO-PFL (arXiv 2510.20219): contribution-oriented personalised federated learning.

:mod:`.contribution` (COWA scores and weights), :mod:`.personalisation` (PWPM masks, masked averaging,
MAMO) and :mod:`.strategy` (:class:`COPFL`, the engine strategy that combines them)."""

from .strategy import COPFL, mask_aware_adam_step

__all__ = ["COPFL", "mask_aware_adam_step"]
