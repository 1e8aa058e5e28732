"""User-facing errors.

A :class:`UserError` is a mistake the user can fix (bad override, missing data, malformed file).
The CLI prints its message as one line and exits non-zero; the full traceback is shown only with
``HYDRA_FULL_ERROR=1``.
"""

from __future__ import annotations


class UserError(Exception):
    """A mistake in the user's command line, config or data, with a message naming the fix."""


def missing_dataset_root(name: str, looked_at: str) -> UserError:
    """The standard message for a dataset root that does not exist."""
    return UserError(
        f"{name} data not found at {looked_at}; pass dataset.root=/path/to/{name} "
        f"or try the synthetic twin with dataset.synthetic=true"
    )


def invalid_value(key: str, value: object, allowed: str) -> UserError:
    """The standard message for an override with a value outside what the key allows."""
    return UserError(f"invalid value {key}={value!r}: {allowed}")
