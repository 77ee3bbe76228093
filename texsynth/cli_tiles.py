"""The tile commands: ``batch`` (many seamless variations, resumable, torchrun-aware) and ``tile-preview``.

Thin like the rest of the CLI: options are parsed here and the work is done by
:mod:`texsynth.tiles`; a :class:`TexsynthError` is one line and exit code 2.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from .api import pick_device
from .cli import EXIT_INTERRUPTED, _stderr, app, fail_cleanly, parse_size
from .errors import TexsynthError
from .io import save_image
from .sources import DEFAULT_OUT_DIR, open_recipe
from .tiles import (
    BatchReport,
    Tile,
    check_folder,
    join_torchrun,
    leave_torchrun,
    local_device,
    make_tiles,
    recipe_identity,
    tile_grid,
    wait_for_all,
    write_contact_sheet,
)

#: Exit code when some tiles failed (the others were made).
EXIT_SOME_FAILED = 1


@app.command("batch")
@fail_cleanly
def batch_command(
    recipes: Annotated[
        list[Path], typer.Argument(help="One or more recipes (or bundles). Several go into one subfolder each.")
    ],
    count: Annotated[int, typer.Option(help="How many tiles per recipe (indices 0 to COUNT-1).")],
    out: Annotated[Path, typer.Option(help="Output folder. With several recipes, each gets OUT/<recipe name>/.")],
    batch_size: Annotated[
        Optional[int], typer.Option(help="Tiles optimized together. Default: from free GPU memory; 4 on the CPU.")
    ] = None,
    tileable: Annotated[
        Optional[bool],
        typer.Option("--tileable/--no-tileable", help="Seamless tiles (default: the recipe's tileable field)."),
    ] = None,
    size: Annotated[Optional[str], typer.Option(help="Tile size: long side (e.g. 256) or WIDTHxHEIGHT.")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Optimizer steps per tile (overrides the recipe).")] = None,
    device: Annotated[
        Optional[str], typer.Option(help="cpu, cuda or mps. Under torchrun: each rank's local GPU, if any.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace the tiles of another recipe found in the output folder.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no summary.")] = False,
) -> None:
    """Make COUNT variations of each recipe as tiles: one PNG per tile, manifest.json and a contact sheet.

    Tile i's seed derives from the recipe's seed and i, so a tile is the same
    whatever batch makes it. Run the same command again to finish an
    interrupted batch: complete tiles are skipped. Under torchrun
    (`torchrun --nproc-per-node 8 -m texsynth batch ...`), each rank makes its
    share of the indices into the same folder.
    """
    if count < 1:
        raise TexsynthError(f"--count: must be at least 1, got {count}")
    overrides = {"tileable": tileable, "size": parse_size(size) if size else None, "steps": steps}
    shard = join_torchrun()
    try:
        chosen = pick_device(device or local_device(shard))
        with ExitStack() as stack:
            # 1. Open and check every recipe and folder before making anything.
            jobs = []
            for path in recipes:
                opened = stack.enter_context(open_recipe(path, overrides=overrides, out_dir=DEFAULT_OUT_DIR))
                folder = out if len(recipes) == 1 else out / Path(opened.source).name.split(".")[0]
                check_folder(folder, recipe_identity(opened.recipe), force=force, source=opened.source)
                jobs.append((opened, folder))
            # 2. Make this rank's share of each.
            show = not quiet and shard.rank == 0
            reports = []
            with _tiles_bar(show, len(shard.indices(count)) * len(jobs)) as on_tile:
                for opened, folder in jobs:
                    report = make_tiles(
                        opened.recipe,
                        folder=folder,
                        count=count,
                        device=chosen,
                        batch_size=batch_size,
                        shard=shard,
                        force=force,
                        source=opened.source,
                        on_tile=on_tile,
                    )
                    on_tile.skip(len(report.skipped))
                    reports.append(report)
                    if report.interrupted:
                        break
        # 3. When every rank is done, one writes the contact sheets.
        wait_for_all(shard)
        if shard.rank == 0:
            for report in reports:
                write_contact_sheet(report.folder)
    finally:
        leave_torchrun(shard)
    _finish(reports, show)


def _finish(reports: list[BatchReport], show: bool) -> None:
    failed = [(report.folder, tile) for report in reports for tile in report.failed]
    if show:
        for report in reports:
            _stderr().print(
                f"{report.folder}: made {len(report.made)} tiles, {len(report.skipped)} already done, "
                f"{len(report.failed)} failed"
            )
    for folder, tile in failed:
        typer.echo(f"failed: {folder}: tile {tile.index} (seed {tile.seed}): {tile.error}", err=True)
    if any(report.interrupted for report in reports):
        typer.echo("interrupted: finished tiles are kept; run the same command again to make the rest", err=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    if failed:
        typer.echo(f"{len(failed)} tiles failed", err=True)
        raise typer.Exit(EXIT_SOME_FAILED)


class _TileCounter:
    """Feeds the batch's progress bar: tiles done / total, tiles per minute, ETA."""

    def __init__(self, bar: Progress | None, total: int) -> None:
        self.bar = bar
        self.task = bar.add_task("tiles", total=total, rate="") if bar is not None else None
        self.started = time.monotonic()
        self.made = 0

    def __call__(self, tile: Tile) -> None:
        self.made += 1
        self._advance(1)

    def skip(self, count: int) -> None:
        self._advance(count)

    def _advance(self, count: int) -> None:
        if self.bar is None or count == 0:
            return
        if not self.bar.live.is_started:
            self.bar.start()
        minutes = max(time.monotonic() - self.started, 1e-9) / 60
        self.bar.update(self.task, advance=count, rate=f"{self.made / minutes:.1f} tiles/min")


@contextmanager
def _tiles_bar(show: bool, total: int) -> Iterator[_TileCounter]:
    bar = None
    if show:
        bar = Progress(
            TextColumn("[bold]tiles"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("eta"),
            TimeRemainingColumn(),
            console=_stderr(),
        )
    try:
        yield _TileCounter(bar, total)
    finally:
        if bar is not None:
            bar.stop()


@app.command("tile-preview")
@fail_cleanly
def tile_preview_command(
    image: Annotated[Path, typer.Argument(help="A tile (any image).", show_default=False)],
    grid: Annotated[int, typer.Option(help="Repeat the tile GRID × GRID times.", min=1, max=16)] = 3,
    output: Annotated[
        Optional[Path], typer.Option("-o", "--output", help="Where to write the preview. Default: IMAGE.gridN.png.")
    ] = None,
) -> None:
    """Write the tile repeated in a grid, to check by eye that its edges meet without a seam."""
    target = output or image.with_name(f"{image.stem}.grid{grid}.png")
    typer.echo(str(save_image(tile_grid(image, grid), target)))

