"""The one error type texsynth raises for anything a user can fix.

The CLI turns a :class:`TexsynthError` into a single line on stderr and exit
code 2; library users catch it like any other exception.
"""

from __future__ import annotations


class TexsynthError(Exception):
    """A problem with the user's input, phrased as ``file: field: what is wrong``."""

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        super().__init__(message)
        #: Every problem found, when more than one was (the message shows the first).
        self.problems: list[str] = problems or [message]


def located(source: str | None, field: str | None, message: str) -> str:
    """Format ``source: field: message``, leaving out the parts that are unknown."""
    return ": ".join(part for part in (source, field, message) if part)
