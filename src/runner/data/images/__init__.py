"""Image and tabular datasets for the federated experiments: real-format readers + synthetic twins.

MNIST (idx files; twin from scikit-learn's real digits), COVTYPE (CSV, optionally gzipped; twin with
class-dependent structure), CIFAR-10/100 (python pickles; procedural twin). Readers return
:class:`ArraySplits` (tensors) via ``load()``.
"""

from .cifar import CifarReader, ProceduralCifarTwin
from .common import ArraySplits, CachedTwin
from .covtype import CovtypeReader, CovtypeTwin
from .mnist import MNISTDigitsTwin, MNISTReader, read_idx, write_idx

__all__ = [
    "ArraySplits",
    "CachedTwin",
    "CifarReader",
    "CovtypeReader",
    "CovtypeTwin",
    "MNISTDigitsTwin",
    "MNISTReader",
    "ProceduralCifarTwin",
    "read_idx",
    "write_idx",
]
