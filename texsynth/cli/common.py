"""What every command shares: the typer app, the error edge, stderr, and parsers for option values.

The edge: any :class:`TexsynthError` becomes one line on stderr and exit code 2
(``fail_cleanly`` for a command, ``main`` for click's own usage errors); Ctrl-C
exits with 130, SIGTERM with 143 and SIGHUP with 129, after one line if the
command had not finished. The CLI names its own flags in messages (``--count: must be at
least 1``) and checks them before it calls the library, which names its
parameters instead.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from enum import Enum
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup

from .._version import __version__
from ..api import device_problem
from ..errors import TexsynthError, one_line
from ..files import input_clash, resolved, user_path, writable_problem
from ..interrupts import exit_code as interrupted_exit_code
from ..interrupts import signals_as_interrupts

#: A flag takes no value, so help shows none (typer would print ``<bool>``).
FLAG = ""


class _ShowsHelpAsAFlag:
    """``--help`` is a flag like any other: no value placeholder in the help."""

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        if option is not None:
            option.metavar = FLAG
        return option


class Command(_ShowsHelpAsAFlag, TyperCommand):
    pass


class Group(_ShowsHelpAsAFlag, TyperGroup):
    pass


app = typer.Typer(
    name="texsynth",
    help="Neural texture synthesis, style transfer and style blending from YAML recipes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=Group,
)

F = TypeVar("F", bound=Callable[..., Any])
EXIT_BAD_INPUT = 2
#: What a command stopped by Ctrl-C, SIGTERM or SIGHUP says (it exits with ``interrupted_exit_code()``).
INTERRUPTED = "interrupted: stopped before it finished; no file was left half-written"
#: Exit code when some items of a batch failed (the others were made).
EXIT_SOME_FAILED = 1


def stderr_console() -> Console:
    """A rich console on stderr that does not colour paths and numbers by guesswork."""
    return Console(stderr=True, highlight=False)


def in_terminal() -> bool:
    """Whether someone is watching: stderr, where the progress bars go, is a terminal."""
    return stderr_console().is_terminal


def fail_cleanly(command: F) -> F:
    """Turn a TexsynthError into one line on stderr and exit code 2, and an interrupt the
    command did not handle itself (Ctrl-C, SIGTERM or SIGHUP while it starts) into one line too."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except TexsynthError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None
        except KeyboardInterrupt:
            say_interrupted()
            raise typer.Exit(interrupted_exit_code()) from None

    return wrapper  # type: ignore[return-value]


def say_interrupted() -> None:
    """One line for a command stopped before it finished: atomic writes leave no partial file."""
    # After SIGHUP the terminal may be gone; the exit code still tells.
    with contextlib.suppress(OSError):
        typer.echo(INTERRUPTED, err=True)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"texsynth {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.", metavar=""),
    ] = False,
) -> None:
    """Neural texture synthesis, style transfer and style blending from YAML recipes."""


def main(argv: list[str] | None = None) -> None:
    """Console entry point: click's own usage errors also become one line and exit code 2;
    SIGTERM and SIGHUP stop a command as Ctrl-C does (:mod:`texsynth.interrupts`)."""
    with signals_as_interrupts():
        try:
            code = app(args=argv, prog_name="texsynth", standalone_mode=False)
        except typer.TyperException as error:  # click's usage errors
            if type(error).__name__ == "NoArgsIsHelpError":
                typer.echo(error.format_message())
            else:
                typer.echo(f"error: {error.format_message()}", err=True)
            sys.exit(error.exit_code)
        except (typer.Abort, KeyboardInterrupt):
            say_interrupted()
            sys.exit(interrupted_exit_code())
    sys.exit(code if isinstance(code, int) else 0)


# ---------------------------------------------------------------- how options look in --help


def choices(values: type[Enum] | tuple[str, ...]) -> str:
    """The valid values of an option as help shows them: ``[max|avg]``."""
    names = [member.value for member in values] if isinstance(values, type) else list(values)
    return "[" + "|".join(names) + "]"


# ---------------------------------------------------------------- checks and parsers of option values


def at_least(option: str, value: int | None, minimum: int = 1) -> int | None:
    """``value`` if it is None or at least ``minimum``; else a message naming ``option``."""
    if value is not None and value < minimum:
        raise TexsynthError(f"{option}: must be at least {minimum}, got {value}")
    return value


def checked_device(text: str | None) -> str | None:
    """``--device``: the value if it names a device this machine has, else a message naming the flag."""
    if text is not None:
        problem = device_problem(text)
        if problem:
            raise TexsynthError(f"--device: {problem}")
    return text


def parse_size(text: str) -> int | list[int]:
    """``"256"`` -> 256 (long side); ``"320x200"`` -> [320, 200] (width, height)."""
    parts = text.lower().split("x")
    if len(parts) in (1, 2) and all(_is_whole_number(part.strip()) for part in parts):
        sides = [int(part) for part in parts]
        return sides[0] if len(sides) == 1 else sides
    raise TexsynthError(f"--size: must be a long side like 256 or WIDTHxHEIGHT like 320x200, got {text!r}")


def _is_whole_number(text: str) -> bool:
    # str.isdigit accepts "²" and other digits that int() refuses.
    return text.isascii() and text.isdigit()


def parse_scales(text: str) -> int | str:
    """``--scales``: ``auto`` or a whole number (the recipe checks the range)."""
    return int(text) if _is_whole_number(text) else text


def parse_numbers(option: str, text: str) -> float | list[float]:
    """``"0.5"`` -> 0.5; ``"0.5,2"`` -> [0.5, 2.0] (one per style, in order)."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise TexsynthError(f"{option}: must be a number like 0.5, or one per style like 0.5,2; got {text!r}") from None
    return values[0] if len(values) == 1 else values


def parse_layers(option: str, text: str) -> dict[str, float]:
    """``"relu4_2"`` -> {relu4_2: 1.0}; ``"relu1_1,relu2_1:0.5"`` -> {relu1_1: 1.0, relu2_1: 0.5}."""
    layers = {}
    for part in text.split(","):
        name, _, weight = part.strip().partition(":")
        try:
            layers[name] = float(weight) if weight else 1.0
        except ValueError:
            raise TexsynthError(
                f"{option}: must be layers like relu4_2 or relu1_1:1,relu2_1:0.5; got {text!r}"
            ) from None
    return layers


def absolute(option: str, path: Path | None) -> str | None:
    """A path from the command line as an absolute string (recipe paths are relative to the recipe instead)."""
    return str(resolved(path, option)) if path is not None else None


def output_file(option: str, path: Path) -> Path:
    """A file a command will write, checked before any work: ``-o: out.zip is a folder``."""
    path = user_path(path, option)
    problem = writable_problem(path)
    if problem:
        raise TexsynthError(f"{option}: {problem}")
    return path


def not_an_input(option: str, output: Path, inputs: list[tuple[str, Path]]) -> None:
    """The output-is-an-input rule for a command's own flags: ``-o: x.png is also IMAGE, an input ...``."""
    clash = input_clash(output, inputs)
    if clash:
        raise TexsynthError(f"{option}: {clash}")


def warn(text: str) -> None:
    """A warning on stderr: one line, whatever file names it quotes (not rich: a path must not be wrapped)."""
    typer.echo(f"warning: {one_line(text)}", err=True)
