"""The one error type texsynth raises for anything a user can fix.

The CLI turns a :class:`TexsynthError` into a single line on stderr and exit
code 2; library users catch it like any other exception. A message is one
line of printable text of bounded length, whatever a hostile file put in it:
values are quoted through :func:`shown`, and :func:`one_line` escapes control
characters and shortens what is still too long.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

#: Longest message, in characters. Far above any real one; a backstop for values quoted unbounded.
MAX_MESSAGE = 2000
#: Characters of a value a message quotes before cutting it short.
MAX_SHOWN = 80


class TexsynthError(Exception):
    """A problem with the user's input, phrased as ``file: field: what is wrong``."""

    def __init__(self, message: str, *, problems: list[str] | None = None) -> None:
        message = one_line(message)
        super().__init__(message)
        #: Every problem found, when more than one was (the message shows the first).
        self.problems: list[str] = [one_line(problem) for problem in problems] if problems else [message]


def one_line(text: str) -> str:
    """``text`` with newlines and other control characters escaped, and at most MAX_MESSAGE long:
    a message is one line, even when it quotes a field name or path from a hostile recipe.

    A long text keeps its start (the file and field) and its end (the line number).
    """
    if len(text) > MAX_MESSAGE:
        cut = len(text) - MAX_MESSAGE
        text = f"{text[: MAX_MESSAGE - 200]}… ({cut} characters left out) …{text[-200:]}"
    return "".join(char if char.isprintable() else repr(char)[1:-1] for char in text)


def shown(value: Any, limit: int = MAX_SHOWN) -> str:
    """``repr(value)`` for a message, cut short after ``limit`` characters.

    Nested values are cut while they are written out, not after: a YAML alias
    can make a small file hold a value whose repr is gigabytes long, or one
    that contains itself.
    """
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}… ({len(value)} characters)"
    text = _bounded_repr(value, limit, depth=0)
    return text if len(text) <= limit else text[:limit] + "…"


def said(value: Any, limit: int = MAX_SHOWN) -> str:
    """A value read from a file, as plain text for a message or a comment line: text as it is,
    anything else as :func:`shown` writes it; cut short after ``limit`` characters and escaped
    by :func:`one_line`, so it can neither end the line nor reach a terminal as a control code."""
    text = value if isinstance(value, str) else shown(value, limit)
    return one_line(text if len(text) <= limit else text[:limit] + "…")


def _bounded_repr(value: Any, limit: int, depth: int) -> str:
    """repr of a (possibly nested) value, never building much more than ``limit`` characters of it."""
    if isinstance(value, (list, tuple, dict)) and depth > 4:
        return "…"
    if isinstance(value, (list, tuple)):
        brackets = "[]" if isinstance(value, list) else "()"
        parts = (_bounded_repr(item, limit, depth + 1) for item in value)
        return brackets[0] + _joined(parts, limit) + brackets[1]
    if isinstance(value, dict):
        parts = (
            f"{_bounded_repr(key, limit, depth + 1)}: {_bounded_repr(item, limit, depth + 1)}"
            for key, item in value.items()
        )
        return "{" + _joined(parts, limit) + "}"
    if isinstance(value, str) and len(value) > limit:
        return repr(value[:limit]) + "…"
    return repr(value)


def _joined(parts: Iterator[str], limit: int) -> str:
    text = ""
    for part in parts:
        text += (", " if text else "") + part
        if len(text) > limit:
            return text[:limit] + "…"
    return text


def located(source: str | None, field: str | None, message: str) -> str:
    """Format ``source: field: message``, leaving out the parts that are unknown."""
    return ": ".join(part for part in (source, field, message) if part)
