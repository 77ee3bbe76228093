"""Writing files safely: the checks before a write, atomic writes, and the rules every writer follows.

Every file texsynth writes goes through :func:`atomic_write`: a temporary
``.NAME.XXXXXXXX.part`` beside the target, renamed into place when complete,
so an interrupted or failed write never leaves a truncated file and never
clobbers a good one. :func:`writable_problem` says, before any work and
without leaving anything behind, whether that will succeed: the target is not
a folder, its folder can be created, its name (and the temporary name, which
is longer) fits the file system, and the folder really takes a new file (a
probe file is created and removed: ``access()`` says yes on a read-only mount
when running as root). A write that still fails (a full disk) is one
:class:`TexsynthError` naming the file, with the temporary file removed.

:func:`input_clash` enforces the output-is-an-input rule: no command writes
over a file it reads.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import TexsynthError, shown

#: What ``atomic_write`` adds to a file's name for its temporary file: ".", ".XXXXXXXX.part".
TEMPORARY_NAME_EXTRA = len(".") + len(".XXXXXXXX.part")


def expanded(path: Path) -> Path:
    """``path`` with a leading ``~`` or ``~user`` expanded; ValueError (with a message) if it cannot be."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        user = str(path).split("/", 1)[0]
        raise ValueError(f"cannot expand {user}: no such user (or no home folder) in {path}") from None


def user_path(path: Path, label: str) -> Path:
    """``path`` with ``~`` expanded; a TexsynthError ``label: ...`` if it cannot be."""
    try:
        return expanded(path)
    except ValueError as error:
        raise TexsynthError(f"{label}: {error}") from None


def resolved(path: Path, label: str) -> Path:
    """``path`` absolute, with ``~`` expanded; a TexsynthError ``label: ...`` if it cannot be expanded."""
    return user_path(path, label).resolve()


def writable_problem(path: Path) -> str | None:
    """Why ``path`` could not be written as an output file, or None; leaves nothing behind."""
    path = Path(path)
    try:
        if path.is_dir():
            return f"{path} is a folder"
        if path.exists() and not stat.S_ISREG(path.stat().st_mode):
            return f"{path} exists and is not a regular file"
    except OSError as error:
        return f"cannot check {path}: {error.strerror or error}"
    folder = _nearest_existing(path.parent)
    if not folder.is_dir():
        return f"cannot create folder {path.parent}: {folder} is not a folder"
    return _name_problem(path, folder) or _probe_problem(folder)


def _nearest_existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _name_problem(path: Path, folder: Path) -> str | None:
    """Why a name along ``path`` (its temporary name included) does not fit the file system, or None."""
    try:
        longest = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        longest = 255
    new_folders = path.parent.relative_to(folder).parts if path.parent != folder else ()
    for name in (*new_folders, path.name):
        size = len(os.fsencode(name))
        if size > longest:
            return f"the name {shown(name, 40)} is too long for the file system ({size} bytes, at most {longest})"
    size = len(os.fsencode(path.name)) + TEMPORARY_NAME_EXTRA
    if size > longest:
        return (
            f"the file name {shown(path.name, 40)} is too long for the file system with the {TEMPORARY_NAME_EXTRA} "
            f"characters of the temporary name it is written to first ({size} bytes, at most {longest})"
        )
    return None


def _probe_problem(folder: Path) -> str | None:
    """Why ``folder`` takes no new file, or None: one is created and removed again."""
    try:
        with tempfile.TemporaryFile(dir=folder, prefix=".texsynth-probe-"):
            pass
    except OSError as error:
        return f"folder {folder} is not writable ({error.strerror or error})"
    return None


@contextlib.contextmanager
def atomic_write(path: Path, mode: str = "wb") -> Iterator[Any]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` in one rename.

    Only writing belongs inside: an OSError there is reported as this file's
    write failing (one line naming it), and the temporary file is removed.
    """
    path = Path(path)
    problem = writable_problem(path)
    if problem:
        raise TexsynthError(problem)
    temporary: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
        with os.fdopen(descriptor, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp makes the file private (0600); an output should get the usual permissions.
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except OSError as error:
        _remove(temporary)
        raise TexsynthError(f"cannot write {path}: {error.strerror or error}") from None
    except BaseException:
        _remove(temporary)
        raise


def _remove(temporary: str | None) -> None:
    if temporary is not None:
        with contextlib.suppress(OSError):
            os.unlink(temporary)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def same_file(one: Path, other: Path) -> bool:
    """Whether two paths name the same file (also through links), whether or not it exists yet."""
    try:
        return os.path.samefile(one, other)
    except OSError:
        return Path(os.path.abspath(one)).resolve() == Path(os.path.abspath(other)).resolve()


def input_clash(output: Path, inputs: Iterable[tuple[str, Path]]) -> str | None:
    """The output-is-an-input rule: which input (field name, path) ``output`` would overwrite, or None."""
    for field, path in inputs:
        if same_file(output, path):
            return f"{output} is also {field}, an input of this run; writing it would destroy the input"
    return None
