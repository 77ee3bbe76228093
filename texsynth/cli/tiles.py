"""The tile commands: ``batch`` (many seamless variations, resumable, torchrun-aware) and ``tile-preview``.

Thin like the rest of the CLI: options are parsed here and the work is done by
:func:`texsynth.tiles.run_batch`; ``cli/__init__.py`` registers them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..errors import TexsynthError
from ..files import resolved
from ..io import image_size, save_image
from ..tile_folder import grid_problem
from ..tiles import MAX_TILES, BatchRun, count_problem, folder_problem, run_batch, tile_grid
from .common import (
    EXIT_SOME_FAILED,
    FLAG,
    at_least,
    checked_device,
    interrupted_exit_code,
    not_an_input,
    output_file,
    parse_size,
    stderr_console,
)
from .progress import TileCounter


def batch_command(
    recipes: Annotated[
        list[Path], typer.Argument(help="One or more recipes (or bundles). Several go into one subfolder each.")
    ],
    count: Annotated[
        int, typer.Option(help=f"How many tiles per recipe (indices 0 to COUNT-1), at most {MAX_TILES}.")
    ],
    out: Annotated[Path, typer.Option(help="Output folder. With several recipes, each gets OUT/<recipe name>/.")],
    batch_size: Annotated[
        Optional[int], typer.Option(help="Tiles optimized together. Default: from free GPU memory; 4 on the CPU.")
    ] = None,
    tileable: Annotated[
        Optional[bool],
        typer.Option(
            "--tileable/--no-tileable", help="Seamless tiles (default: the recipe's tileable field).", metavar=FLAG
        ),
    ] = None,
    size: Annotated[Optional[str], typer.Option(help="Tile size: long side (e.g. 256) or WIDTHxHEIGHT.")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Optimizer steps per tile (overrides the recipe).")] = None,
    device: Annotated[
        Optional[str], typer.Option(help="cpu, cuda or mps. Under torchrun: each rank's local GPU, if any.")
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="Replace the tiles of another recipe found in the output folder.", metavar=FLAG),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no summary.", metavar=FLAG)] = False,
) -> None:
    """Make COUNT variations of each recipe as tiles: one PNG per tile, manifest.json and a contact sheet.

    Tile i's seed derives from the recipe's seed and i, so a tile is the same
    whatever batch makes it. Run the same command again to finish an
    interrupted batch: complete tiles are skipped. Under torchrun
    (`torchrun --nproc-per-node 8 -m texsynth batch ...`), each rank makes its
    share of the indices into the same folder.
    """
    problem = count_problem(count)
    if problem:
        raise TexsynthError(f"--count: {problem}")
    at_least("--batch-size", batch_size)
    checked_device(device)
    out = resolved(out, "--out")
    problem = folder_problem(out)
    if problem:
        raise TexsynthError(f"--out: {problem}")
    overrides = {"tileable": tileable, "size": parse_size(size) if size else None, "steps": steps}
    counter = TileCounter(show=not quiet)
    try:
        run = run_batch(
            recipes,
            count=count,
            out=out,
            device=device,
            batch_size=batch_size,
            overrides=overrides,
            force=force,
            watcher=counter,
        )
    finally:
        counter.stop()
    _finish(run, show=not quiet and run.shard.rank == 0)


def _finish(run: BatchRun, show: bool) -> None:
    if show:
        for report in run.reports:
            stderr_console().print(
                f"{report.folder}: made {len(report.made)} tiles, {len(report.skipped)} already done, "
                f"{len(report.failed)} failed"
            )
    for folder, tile in run.failed:
        typer.echo(f"failed: {folder}: tile {tile.index} (seed {tile.seed}): {tile.error}", err=True)
    if run.interrupted:
        typer.echo("interrupted: finished tiles are kept; run the same command again to make the rest", err=True)
        raise typer.Exit(interrupted_exit_code())
    if run.failed:
        typer.echo(f"{len(run.failed)} tiles failed", err=True)
        raise typer.Exit(EXIT_SOME_FAILED)


def tile_preview_command(
    image: Annotated[Path, typer.Argument(help="A tile (any image).", show_default=False)],
    grid: Annotated[
        int,
        typer.Option(help="Repeat the tile GRID × GRID times (at most 16, and 8192×8192 px in all).", min=1, max=16),
    ] = 3,
    output: Annotated[
        Optional[Path], typer.Option("-o", "--output", help="Where to write the preview. Default: IMAGE.gridN.png.")
    ] = None,
) -> None:
    """Write the tile repeated in a grid, to check by eye that its edges meet without a seam."""
    problem = grid_problem(image_size(image), grid)
    if problem:
        raise TexsynthError(f"--grid: {problem}")
    target = output_file("-o", output or image.with_name(f"{image.stem}.grid{grid}.png"))
    not_an_input("-o", target, [("IMAGE", image)])
    typer.echo(str(save_image(tile_grid(image, grid), target)))

