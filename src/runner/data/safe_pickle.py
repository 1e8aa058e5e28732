"""Restricted unpickling for dataset formats that are pickles (CIFAR "python version", PYSKL).

``pickle.load`` runs whatever callable a file names (``os.system``, ``subprocess.Popen``, ...), so a
crafted dataset file would run code on the user's machine. :func:`load_restricted_pickle` admits only
the globals these formats need to rebuild plain containers and NumPy arrays:

- NumPy's array and scalar reconstruction (``numpy.core.multiarray._reconstruct`` / ``scalar`` and,
  for protocol 5, ``numpy.core.numeric._frombuffer``, under both the NumPy 1 ``numpy.core`` and the
  NumPy 2 ``numpy._core`` names), ``numpy.ndarray``, ``numpy.dtype`` and the ``numpy.dtypes`` classes;
- ``_codecs.encode``, which protocol-2 pickles written by Python 3 use to store ``bytes``;
- ``collections.OrderedDict``.

Anything else (a function, a class, a module attribute) fails with a :class:`UserError` naming the
file and the refused global, before any of it is called. Builtin containers and scalars (dict, list,
tuple, str, bytes, int, float, bool, None) need no global and always load.
"""

from __future__ import annotations

import io
import os
import pickle
from typing import Any, BinaryIO

from runner.errors import UserError

ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
        ("collections", "OrderedDict"),
    }
)

# NumPy 2 pickles its dtypes as instances of ``numpy.dtypes.<Kind>DType`` classes
_NUMPY_DTYPE_MODULE = "numpy.dtypes"


class RefusedGlobal(pickle.UnpicklingError):
    """The pickle names a global outside :data:`ALLOWED_GLOBALS`."""


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only :data:`ALLOWED_GLOBALS` (and NumPy dtype classes)."""

    def find_class(self, module: str, name: str) -> Any:  # noqa: D102 - pickle's hook
        if (module, name) in ALLOWED_GLOBALS or (
            module == _NUMPY_DTYPE_MODULE and name.endswith("DType") and name.isidentifier()
        ):
            return super().find_class(module, name)
        raise RefusedGlobal(f"refused to load {module}.{name}")


def loads_restricted(data: bytes, *, encoding: str = "ASCII") -> Any:
    """Unpickle ``data`` admitting only :data:`ALLOWED_GLOBALS`; raises ``pickle.UnpicklingError``."""
    return RestrictedUnpickler(io.BytesIO(data), encoding=encoding).load()


def load_restricted_pickle(
    source: str | os.PathLike | BinaryIO, *, format_name: str, encoding: str = "ASCII"
) -> Any:
    """Load a pickled dataset file without running code from it.

    ``format_name`` names the expected format in the error message ("CIFAR python pickle",
    "PYSKL annotation pickle"). ``encoding`` is pickle's (``"bytes"`` for CIFAR's Python 2 batches).
    Every failure (missing file, truncated stream, refused global) is one :class:`UserError` naming
    the file.
    """
    name = getattr(source, "name", None) if not isinstance(source, (str, os.PathLike)) else source
    where = str(name) if name is not None else "<stream>"
    try:
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as fh:
                return RestrictedUnpickler(fh, encoding=encoding).load()
        return RestrictedUnpickler(source, encoding=encoding).load()
    except RefusedGlobal as err:
        raise UserError(
            f"{where}: {err}; a {format_name} holds only containers and NumPy arrays, and loading "
            "anything else would run code from the file"
        ) from err
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise UserError(f"{where} is not a readable {format_name} ({type(err).__name__}: {err})") from err
