"""Command-line overrides that mean a config-group choice.

``dataset.synthetic=true`` is how users ask for the synthetic twin. Hydra can choose defaults only
from config-group choices, never from a value, so the twin-sized recipe of an experiment that
defaults to real data (``conf/recipe/twin/<experiment>.yaml``, selected in ``conf/config.yaml`` by
``optional recipe@_global_: ${data}/${experiment}``) needs the choice ``data=twin``. This module
reads ``dataset.synthetic=<bool>`` (sweeps included: ``dataset.synthetic=true,false``) as
``data=twin|real`` — whose configs set ``dataset.synthetic`` — before Hydra composes, for
``python -m runner`` and for :func:`runner.compose.compose_run_config` alike. Other values are left
as they are (a wrong value is reported by validation).
"""

from __future__ import annotations

from collections.abc import Sequence

SYNTHETIC_KEY = "dataset.synthetic"
_CHOICES = {"true": "twin", "yes": "twin", "1": "twin", "false": "real", "no": "real", "0": "real"}


def _data_choice(value: str) -> str | None:
    """``data`` choices for a ``dataset.synthetic`` value (a bool or a comma-separated sweep of bools)."""
    choices = [_CHOICES.get(part.strip().lower()) for part in value.split(",")]
    return None if not choices or None in choices else ",".join(choices)


def with_data_choice(overrides: Sequence[str]) -> list[str]:
    """``overrides`` with ``dataset.synthetic=<bool>`` written as the ``data=twin|real`` choice."""
    out: list[str] = []
    for arg in overrides:
        key, sep, value = arg.partition("=")
        choice = _data_choice(value) if sep and key.lstrip("+") == SYNTHETIC_KEY else None
        arg = arg if choice is None else f"data={choice}"
        if not (arg.startswith("data=") and arg in out):  # said twice (both spellings): once
            out.append(arg)
    return out
