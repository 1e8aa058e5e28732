"""What readers left out while loading, counted for ``metrics.json`` (issue 18, items 4 and 5).

A reader that drops data — a listed video missing on disk, an empty record, duplicate rows, a
segment past its video's end — calls :func:`record_skip` once per (source, reason) with the count
and a few examples. The entry is logged and ``runner.train`` writes every entry of the run to
``metrics.json`` under ``skipped``. Skipping is fine only while something remains: a reader whose
subset ends up empty raises :func:`nothing_left` instead.

Entries are keyed by (source, reason); recording the same key again (a nested training reading the
same files) keeps the larger count, so nothing is counted twice.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from runner.errors import UserError

log = logging.getLogger("runner.data")

__all__ = ["record_skip", "skipped", "reset_skips", "nothing_left", "MAX_EXAMPLES"]

MAX_EXAMPLES = 5
_RECORDS: dict[tuple[str, str], dict[str, Any]] = {}


def record_skip(source: str, reason: str, count: int, examples: Sequence[Any] = ()) -> None:
    """Count ``count`` items of ``source`` (a file or dataset name) dropped for ``reason``."""
    count = int(count)
    if count <= 0:
        return
    shown = [str(e) for e in list(examples)[:MAX_EXAMPLES]]
    key = (str(source), str(reason))
    entry = _RECORDS.get(key)
    if entry is None or entry["count"] < count:
        _RECORDS[key] = {"source": key[0], "reason": key[1], "count": count, "examples": shown}
    more = f" (e.g. {', '.join(shown)})" if shown else ""
    log.warning("%s: skipped %d %s%s", source, count, reason, more)


def skipped() -> list[dict[str, Any]]:
    """Every entry recorded since the last :func:`reset_skips`."""
    return [dict(entry) for entry in _RECORDS.values()]


def reset_skips() -> None:
    _RECORDS.clear()


def nothing_left(source: str, what: str, hint: str = "") -> UserError:
    """The error for a subset that is empty after skipping: names the source and what was skipped."""
    related = [e for e in _RECORDS.values() if e["source"] == str(source)]
    detail = "; ".join(f"{e['count']} {e['reason']}" for e in related)
    return UserError(
        f"{source}: no {what} left"
        + (f" (skipped: {detail})" if detail else "")
        + (f"; {hint}" if hint else "")
    )
