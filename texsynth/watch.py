"""Watching a run: a loss trace, numbered frames and a live preview, as ``on_step`` callbacks.

The optimizer reports each step through ``on_step(StepReport)``; these small
callables turn that into files, so the loop itself never writes anything.
Every file is written atomically (a viewer never sees half an image), and
nothing is created before the first step, so a recipe that fails its checks
leaves no trace behind.

- :class:`LossTrace`: one JSON object per line and step (``step``,
  ``elapsed``, each loss term, ``total``), renamed into place when the run ends.
- :class:`Frames`: every N-th step (and the last) as a numbered PNG in a folder.
- :class:`Preview`: one image rewritten at most every ``interval`` seconds,
  and never so often that writing it costs more than 1% of the run. A run in
  a terminal gets one by default, beside its output (:func:`default_preview_path`),
  removed when the run ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO

from torch import Tensor
from torchvision.utils import make_grid

from .errors import TexsynthError
from .io import save_image, writable_problem
from .optimize import StepReport
from .recipe import OUTPUT_SUFFIXES

Callback = Callable[[StepReport], None]


def trace_path(output: Path) -> Path:
    """Where the loss trace of ``output`` goes: ``out/x.png`` -> ``out/x.trace.jsonl``."""
    return output.with_name(f"{output.stem}.trace.jsonl")


def frames_folder(output: Path) -> Path:
    """Default folder for numbered frames: ``out/x.png`` -> ``out/x.frames/``."""
    return output.with_name(f"{output.stem}.frames")


def chain(*callbacks: Callback | None) -> Callback | None:
    """One callback calling each of ``callbacks`` in turn (None when there are none)."""
    present = [callback for callback in callbacks if callback is not None]
    if not present:
        return None

    def each(progress: StepReport) -> None:
        for callback in present:
            callback(progress)

    return each


def _picture(image: Tensor | None) -> Tensor:
    if image is None:
        raise TexsynthError("this optimizer does not report its image, so frames and previews cannot be written")
    # A batch becomes one row of images, so a preview shows every tile at once.
    return make_grid(image.detach().float().cpu(), nrow=image.shape[0], padding=0) if image.shape[0] > 1 else image


def preview_problem(path: Path) -> str | None:
    """Why ``path`` cannot be a preview image, or None (nothing is created)."""
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        return f"unsupported image type {path.suffix or '(none)'!r}; use .png, .jpg or .webp"
    return writable_problem(path)


class LossTrace:
    """Loss terms per step as JSON lines; the file appears (atomically) when the run ends.

    Use as a context manager: leaving it normally (also after Ctrl-C, which the
    optimizer turns into a normal return) keeps the trace; an exception drops it.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        problem = writable_problem(self.path)
        if problem:
            raise TexsynthError(f"{self.path}: trace: {problem}")
        self._handle: IO[str] | None = None
        self._temporary: str | None = None

    def __call__(self, progress: StepReport) -> None:
        record = {"step": progress.step, "elapsed": round(progress.elapsed, 4), **progress.values()}
        try:
            if self._handle is None:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                descriptor, self._temporary = tempfile.mkstemp(
                    dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".part"
                )
                self._handle = os.fdopen(descriptor, "w", encoding="utf-8")
            self._handle.write(json.dumps(record) + "\n")
            self._handle.flush()
        except OSError as error:  # a full disk, mid-run
            self._discard()
            raise TexsynthError(f"cannot write {self.path}: {error.strerror or error}") from None

    def __enter__(self) -> LossTrace:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._handle is None or self._temporary is None:
            return
        if kind is not None:
            self._discard()
            return
        try:
            self._handle.close()
            os.chmod(self._temporary, 0o644)
            os.replace(self._temporary, self.path)
        except OSError as failure:
            self._discard()
            raise TexsynthError(f"cannot write {self.path}: {failure.strerror or failure}") from None

    def _discard(self) -> None:
        """Close and remove the temporary file, whatever state it is in."""
        if self._handle is not None:
            with contextlib.suppress(OSError):
                self._handle.close()
        if self._temporary is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._temporary)
        self._handle = self._temporary = None


class Frames:
    """Every ``every``-th step, and the last, as ``<folder>/step-0010.png``."""

    def __init__(self, folder: Path, every: int) -> None:
        if every < 1:
            raise TexsynthError(f"every: must be 1 or more, got {every}")
        self.folder = Path(folder)
        self.every = every
        problem = writable_problem(self.folder / "step-1.png")
        if problem:
            raise TexsynthError(f"{self.folder}: frames: {problem}")

    def path(self, step: int, steps: int) -> Path:
        return self.folder / f"step-{step:0{len(str(steps))}d}.png"

    def __call__(self, progress: StepReport) -> None:
        if progress.step % self.every == 0 or progress.step == progress.steps:
            save_image(_picture(progress.image), self.path(progress.step, progress.steps))


class Preview:
    """One image kept up to date during the run, for watching in an image viewer.

    Rewritten at most every ``interval`` seconds, and never so often that
    writing it takes more than :data:`PREVIEW_SHARE` of the run: after a write
    that took ``t`` seconds the next waits at least ``t / PREVIEW_SHARE`` (a
    256 px PNG took 15–45 ms to write on two CPU cores, 2026-12-01; one 16
    times larger takes about 16 times as long).
    """

    def __init__(self, path: Path, interval: float = 1.0) -> None:
        self.path = Path(path)
        problem = preview_problem(self.path)
        if problem:
            raise TexsynthError(f"preview: {problem}")
        self.interval = interval
        self._next = -float("inf")
        #: Seconds spent writing so far, and how many writes.
        self.seconds, self.writes = 0.0, 0

    def __call__(self, progress: StepReport) -> None:
        now = time.monotonic()
        if now >= self._next or progress.step == progress.steps:
            save_image(_picture(progress.image), self.path)
            took = time.monotonic() - now
            self.seconds, self.writes = self.seconds + took, self.writes + 1
            self._next = now + max(self.interval, took / PREVIEW_SHARE)


#: The most of a run's time a preview may spend writing itself.
PREVIEW_SHARE = 0.01
#: How often the preview a terminal session gets by default is rewritten, at most.
DEFAULT_PREVIEW_INTERVAL = 2.0


def default_preview_path(output: Path) -> Path:
    """Where a terminal session's preview goes: ``out/x.png`` -> ``out/x.preview.png``."""
    return output.with_name(f"{output.stem}.preview.png")
