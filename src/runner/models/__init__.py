"""Model definitions (backbones); training methods live elsewhere.

Video backbones: :mod:`runner.models.video`. Local weight loading:
:func:`runner.models.checkpoint.load_local_weights`.
"""

from runner.models.checkpoint import load_local_weights

__all__ = ["load_local_weights"]
