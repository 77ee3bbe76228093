"""rich progress bars fed by the library's callbacks: optimizer steps, tiles of a batch.

Each bar starts on its first update, so an input error found before the work
starts prints alone, and reads loss values (a GPU sync) only a few times a second.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from ..distributed import Shard
from ..optimize import StepReport
from ..tiles import Tile
from .common import stderr_console

#: Seconds between two readings of the loss values shown beside a bar.
VALUES_EVERY = 0.25


def bar(label: str, *, before: tuple[str, ...] = (), after: tuple[str, ...] = ()) -> Progress:
    """A bar: ``label``, done / total, the task's text fields ``before``, elapsed, ETA, then those ``after``."""
    return Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        *(TextColumn(f"{{task.fields[{name}]}}") for name in before),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        *(TextColumn(f"{{task.fields[{name}]}}") for name in after),
        console=stderr_console(),
        transient=False,
    )


def loss_text(values: dict[str, float]) -> str:
    return "  ".join(f"{name} {value:.4g}" for name, value in values.items())


@contextmanager
def step_bar(quiet: bool, steps: int) -> Iterator[Callable[[StepReport], None] | None]:
    """A bar of optimizer steps with the current loss terms (None when ``quiet``)."""
    if quiet:
        yield None
        return
    progress = bar("synthesizing", after=("losses",))
    task = progress.add_task("synthesizing", total=steps, losses="")
    last_values = 0.0

    def on_step(report: StepReport) -> None:
        nonlocal last_values
        if not progress.live.is_started:
            progress.start()
        fields: dict[str, Any] = {}
        now = time.monotonic()
        if now - last_values > VALUES_EVERY or report.step == report.steps:
            last_values = now
            fields["losses"] = loss_text(report.values())
        progress.update(task, completed=report.step, **fields)

    try:
        yield on_step
    finally:
        progress.stop()


class TileCounter:
    """Feeds the batch's bar (a :class:`texsynth.tiles.BatchWatcher`): tiles done / total, tiles per minute, ETA."""

    def __init__(self, show: bool) -> None:
        self.show = show
        self.bar: Progress | None = None
        self.task: Any = None
        self.started = time.monotonic()
        self.count = 0
        self.rank = 0

    def planned(self, total: int, shard: Shard) -> None:
        self.rank = shard.rank
        # Under torchrun only the first process draws, so the terminal shows one bar.
        if self.show and shard.rank == 0:
            self.bar = bar("tiles", before=("rate",))
            self.task = self.bar.add_task("tiles", total=total, rate="")

    def made(self, tile: Tile) -> None:
        self.count += 1
        self._advance(1)

    def skipped(self, count: int) -> None:
        self._advance(count)

    def _advance(self, count: int) -> None:
        if self.bar is None or count == 0:
            return
        if not self.bar.live.is_started:
            self.bar.start()
        minutes = max(time.monotonic() - self.started, 1e-9) / 60
        self.bar.update(self.task, advance=count, rate=f"{self.count / minutes:.1f} tiles/min")

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
