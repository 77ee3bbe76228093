"""Stopping a run: SIGTERM and SIGHUP behave like Ctrl-C, and the exit code says which signal it was.

The optimizer and batches already end cleanly on ``KeyboardInterrupt``: the
best image so far is saved, no ``.part`` file is left, and a bundle's unpacked
copy is removed by its context. A job scheduler's SIGTERM or a closed
terminal's SIGHUP would instead kill the process where it stands, leaving a
temporary trace and the unpacked bundle behind. While
:func:`signals_as_interrupts` is active, both raise ``KeyboardInterrupt`` like
Ctrl-C does, and :func:`exit_code` is 128 + the signal's number, as shells
report a process a signal stopped (130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP).

Deliberately light (no torch): the command line installs it before importing
anything heavy, so Ctrl-C while texsynth starts is one line too.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from types import FrameType
from typing import Any

#: The signals that stop a run like Ctrl-C (SIGHUP does not exist on Windows).
SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))

_received: int = signal.SIGINT


def _interrupt(signum: int, frame: FrameType | None) -> None:
    global _received
    _received = signum
    raise KeyboardInterrupt


@contextmanager
def handling(handlers: dict[int, Any]) -> Iterator[None]:
    """Install ``handlers`` (signal number → handler) inside the block, and put the previous ones back.

    Outside the main thread signals cannot be handled, and the block runs without them.
    """
    previous = {}
    try:
        for number, handler in handlers.items():
            previous[number] = signal.signal(number, handler)
    except ValueError:  # not the main thread: signals cannot be handled here
        pass
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def signals_as_interrupts() -> AbstractContextManager[None]:
    """SIGINT, SIGTERM and SIGHUP raise KeyboardInterrupt inside the block (main thread only)."""
    return handling({number: _interrupt for number in SIGNALS})


def blocking_native_call() -> AbstractContextManager[None]:
    """Around a call that can block in native code for long (joining a torchrun job, its barrier):
    SIGTERM and SIGHUP stop the process at once, as without texsynth's handling. A Python
    handler runs only once the call returns, so ``kill`` would otherwise seem to do nothing."""
    ours = [n for n in SIGNALS if n != signal.SIGINT and signal.getsignal(n) is _interrupt]
    return handling({number: signal.SIG_DFL for number in ours})


def remember(signum: int) -> None:
    """Note that ``signum`` stopped the run, for :func:`exit_code` (a handler of its own calls this)."""
    global _received
    _received = signum


def exit_code() -> int:
    """128 + the number of the signal that interrupted (130 when it was Ctrl-C, or nothing else is known)."""
    return 128 + int(_received)
