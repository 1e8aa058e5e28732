"""SIGTERM / SIGINT end a run with a non-zero exit and a line saying how to resume (issue 18, item 2).

Lightning turns a SIGTERM into ``SIGTERMException`` — a ``SystemExit`` without a code, i.e. exit
status 0 — and a Ctrl+C into ``sys.exit(1)`` with a "graceful shutdown" line; a nested training (a
teacher, the fawning LM) interrupted that way could let its parent exit 0. Here, for the whole run
including nested trainings, both signals raise :class:`RunInterrupted` in the main process: a
``BaseException`` (so no ``except Exception`` swallows it) that Lightning's loops pass through after
their ``on_exception`` hooks. ``runner.cli`` prints the one-line message and exits with
``128 + signal number`` (130 for SIGINT, 143 for SIGTERM), as a shell does for a killed process.

Loader worker processes inherit the handlers: there SIGINT is ignored (the main process shuts the
workers down) and SIGTERM keeps its default action.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from typing import Any

__all__ = ["RunInterrupted", "handle_interrupts"]

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class RunInterrupted(BaseException):
    """The run received SIGTERM or SIGINT."""

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        self.signal_name = signal.Signals(signum).name
        super().__init__(f"interrupted by {self.signal_name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


@contextlib.contextmanager
def handle_interrupts() -> Iterator[None]:
    """Within the block, SIGTERM / SIGINT raise :class:`RunInterrupted` (once; a second signal while
    shutting down gets the signal's default action, so a second Ctrl+C kills at once)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    owner = os.getpid()
    previous: dict[int, Any] = {s: signal.getsignal(s) for s in SIGNALS}

    def handler(signum: int, frame: Any) -> None:
        if os.getpid() != owner:  # a forked loader worker
            if signum == signal.SIGINT:
                return
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        for s in SIGNALS:
            signal.signal(s, signal.SIG_DFL)
        raise RunInterrupted(signum)

    for s in SIGNALS:
        signal.signal(s, handler)
    try:
        yield
    finally:
        for s, old in previous.items():
            signal.signal(s, old if old is not None else signal.SIG_DFL)
