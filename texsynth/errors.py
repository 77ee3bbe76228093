"""The one error type texsynth raises for anything a user can fix.

The CLI turns a :class:`TexsynthError` into a single line on stderr and exit
code 2; library users catch it like any other exception.
"""

from __future__ import annotations


class TexsynthError(Exception):
    """A problem with the user's input, phrased as ``file: field: what is wrong``."""

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        message = one_line(message)
        super().__init__(message)
        #: Every problem found, when more than one was (the message shows the first).
        self.problems: list[str] = [one_line(problem) for problem in problems] if problems else [message]


def one_line(text: str) -> str:
    """``text`` with newlines and other control characters escaped: a message is one line,
    even when it quotes a field name or path from a hostile recipe."""
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def located(source: str | None, field: str | None, message: str) -> str:
    """Format ``source: field: message``, leaving out the parts that are unknown."""
    return ": ".join(part for part in (source, field, message) if part)
