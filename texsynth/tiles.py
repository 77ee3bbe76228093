"""Batches of texture tiles: per-index seeds, batching, and whole batches of several recipes.

Tile ``i``'s seed derives from (recipe seed, i) alone, so it is the same image
whatever batch made it, and the indices split across torchrun ranks by
``i % world`` (:mod:`texsynth.distributed`). Where tiles go and how a folder
remembers them (PNGs with their recipe, the manifest, the contact sheet) is
:mod:`texsynth.tile_folder`; ``make_tiles`` makes one recipe's tiles into a
folder, ``run_batch`` a whole batch, as ``texsynth batch`` does.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from .api import Synthesis, output_size, pick_device, synthesis_metadata, synthesize
from .distributed import Shard, join_torchrun, leave_torchrun, local_device, wait_for_all
from .errors import TexsynthError, located
from .features import activation_elements
from .files import input_clash
from .io import save_image
from .messages import field_path
from .provenance import recipe_identity
from .recipe import Recipe
from .sources import DEFAULT_OUT_DIR, Opened, open_recipe
from .tile_folder import (
    CONTACT_SHEET,
    MANIFEST,
    Tile,
    check_folder,
    completed,
    folder_problem,
    read_manifest,
    remove_leftovers,
    tile_grid,
    tile_name,
    update_manifest,
    write_contact_sheet,
)

__all__ = [
    "CONTACT_SHEET",
    "MANIFEST",
    "BatchReport",
    "BatchRun",
    "BatchWatcher",
    "Shard",
    "Tile",
    "auto_batch_size",
    "check_folder",
    "completed",
    "count_problem",
    "folder_problem",
    "make_tiles",
    "read_manifest",
    "recipe_identity",
    "run_batch",
    "tile_grid",
    "tile_name",
    "tile_seed",
    "update_manifest",
    "write_contact_sheet",
]

#: Batch size on the CPU: batching buys little there (the convolutions already
#: use every core) but keeps the per-batch overhead down.
CPU_BATCH = 4
#: Most tiles per batch on a GPU, and the share of free memory a batch may take.
MAX_GPU_BATCH = 32
GPU_MEMORY_SHARE = 0.6
#: Most tiles per recipe in one batch folder. The manifest is rewritten after every
#: batch and the indices are planned up front, so far more is a typo, not a dataset.
MAX_TILES = 100_000


def auto_batch_size(recipe: Recipe, device: torch.device, width: int, height: int) -> int:
    """How many tiles to optimize at once: from free GPU memory, or a small fixed number elsewhere."""
    if device.type != "cuda":
        return CPU_BATCH
    free, _ = torch.cuda.mem_get_info(device)
    # Activations kept for the backward pass plus their gradients, in fp32 to be safe,
    # and the L-BFGS history: 2 × 50 image-sized vectors.
    per_tile = 4 * (2 * activation_elements(recipe.layers, width, height) + 2 * 50 * 3 * width * height)
    return max(1, min(MAX_GPU_BATCH, int(GPU_MEMORY_SHARE * free // per_tile)))


def count_problem(count: int) -> str | None:
    """Why ``count`` tiles per recipe is not a batch texsynth makes, or None."""
    if count < 1:
        return f"must be at least 1, got {count}"
    if count > MAX_TILES:
        return f"must be at most {MAX_TILES} tiles per recipe, got {count}"
    return None


def tile_seed(recipe_seed: int, index: int) -> int:
    """The seed of tile ``index``: drawn from a generator seeded by (recipe seed, index) alone."""
    generator = torch.Generator().manual_seed((recipe_seed * 1_000_003 + index) % 2**63)
    return int(torch.randint(0, 2**62, (1,), generator=generator))


@dataclass
class BatchReport:
    folder: Path
    wanted: int  # tiles this process was responsible for
    skipped: list[int] = field(default_factory=list)  # already complete
    made: list[Tile] = field(default_factory=list)
    failed: list[Tile] = field(default_factory=list)
    interrupted: bool = False


def make_tiles(
    recipe: Recipe,
    *,
    folder: Path,
    count: int,
    device: str | torch.device = "cpu",
    batch_size: int | None = None,
    shard: Shard = Shard(),
    force: bool = False,
    source: str = "recipe",
    on_tile: Callable[[Tile], None] | None = None,
) -> BatchReport:
    """Make tiles 0..count-1 of ``recipe`` in ``folder`` (this shard's share), skipping finished ones."""
    _check_counts(count, batch_size, source)
    device = torch.device(device)
    batch_size = batch_size or auto_batch_size(recipe, device, *output_size(recipe))
    identity = recipe_identity(recipe)
    check_folder(folder, identity, force=force, source=source)
    _check_inputs_outside(recipe, folder, count, source)
    folder.mkdir(parents=True, exist_ok=True)
    if shard.world == 1:
        remove_leftovers(folder)
    # 1. What is already there: with --force another recipe's tiles are replaced, never mixed in.
    done = {} if force else completed(folder, identity)
    replacing = force and (read_manifest(folder) or {}).get("identity") not in (None, identity)
    wanted = shard.indices(count)
    report = BatchReport(folder=folder, wanted=len(wanted), skipped=[i for i in wanted if i in done])
    update_manifest(folder, recipe, identity, [done[i] for i in report.skipped], replace=replacing)
    todo = [index for index in wanted if index not in done]
    # 2. The rest, batch by batch; each finished tile is on disk before the manifest names it.
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        seeds = [tile_seed(recipe.seed, index) for index in chunk]
        began = time.perf_counter()
        synthesis = synthesize(recipe, device=device, seeds=seeds)
        if synthesis.interrupted:
            report.interrupted = True  # unfinished tiles are not written
            break
        seconds = (time.perf_counter() - began) / len(chunk)
        tiles = [_keep(recipe, identity, folder, index, synthesis, item, seconds) for item, index in enumerate(chunk)]
        update_manifest(folder, recipe, identity, tiles)
        for tile in tiles:
            (report.failed if tile.error else report.made).append(tile)
            if on_tile is not None:
                on_tile(tile)
    return report


def _check_counts(count: int, batch_size: int | None, source: str) -> None:
    problem = count_problem(count)
    if problem:
        raise TexsynthError(located(source, "count", problem))
    if batch_size is not None and batch_size < 1:
        raise TexsynthError(located(source, "batch_size", f"must be at least 1, got {batch_size}"))


class BatchWatcher(Protocol):
    """What :func:`run_batch` reports as it goes (a progress bar, a log)."""

    def planned(self, total: int, shard: Shard) -> None:
        """Before the first tile: how many tiles this process is responsible for."""

    def made(self, tile: Tile) -> None:
        """A tile was made (or failed: ``tile.error`` is set)."""

    def skipped(self, count: int) -> None:
        """``count`` tiles were already done and are kept."""


@dataclass(frozen=True)
class BatchRun:
    """What :func:`run_batch` did in this process: one report per recipe, and which shard it was."""

    reports: list[BatchReport]
    shard: Shard

    @property
    def failed(self) -> list[tuple[Path, Tile]]:
        return [(report.folder, tile) for report in self.reports for tile in report.failed]

    @property
    def interrupted(self) -> bool:
        return any(report.interrupted for report in self.reports)


def run_batch(
    sources: Sequence[Path],
    *,
    count: int,
    out: Path,
    device: str | torch.device | None = None,
    batch_size: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    force: bool = False,
    watcher: BatchWatcher | None = None,
) -> BatchRun:
    """Make ``count`` tiles of each recipe (YAML, bundle or output image) into ``out``, resumably.

    One recipe writes into ``out``; several write into ``out/<recipe name>/``.
    Under torchrun each process makes its share of the indices into the same
    folders and the processes meet at the end, where one writes the contact
    sheets. ``device`` None means this process's GPU under torchrun, else the
    best device here (:func:`texsynth.api.pick_device`). Every recipe and folder is checked
    before any tile is made.
    """
    _check_counts(count, batch_size, "batch")
    shard = join_torchrun()
    reports: list[BatchReport] = []
    try:
        chosen = pick_device(str(device) if device is not None else local_device(shard))
        with ExitStack() as stack:
            # 1. Open and check every recipe and folder before making anything.
            jobs: list[tuple[Opened, Path]] = []
            for path in sources:
                opened = stack.enter_context(open_recipe(path, overrides=overrides, out_dir=DEFAULT_OUT_DIR))
                folder = out if len(sources) == 1 else out / Path(path).name.split(".")[0]
                _check_folder_is_its_own(folder, opened.source, jobs)
                check_folder(folder, recipe_identity(opened.recipe), force=force, source=opened.source)
                _check_inputs_outside(opened.recipe, folder, count, opened.source)
                jobs.append((opened, folder))
            # 2. Make this process's share of each.
            if watcher is not None:
                watcher.planned(len(shard.indices(count)) * len(jobs), shard)
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
                    on_tile=watcher.made if watcher is not None else None,
                )
                if watcher is not None:
                    watcher.skipped(len(report.skipped))
                reports.append(report)
                if report.interrupted:
                    break
        # 3. When every process is done, one writes the contact sheets.
        wait_for_all(shard)
        if shard.rank == 0:
            for report in reports:
                write_contact_sheet(report.folder)
    finally:
        leave_torchrun(shard)
    return BatchRun(reports=reports, shard=shard)


def _check_folder_is_its_own(folder: Path, source: str, jobs: Sequence[tuple[Opened, Path]]) -> None:
    """Two recipes of one batch never share a folder: recipes with the same file name would."""
    for other, taken in jobs:
        # Compared without case: on macOS and Windows, tiles/Brick and tiles/brick are one folder.
        if str(taken).casefold() == str(folder).casefold():
            raise TexsynthError(
                located(
                    source,
                    "out",
                    f"{other.source} already makes its tiles in {taken}; recipes of one batch need different names",
                )
            )


def _check_inputs_outside(recipe: Recipe, folder: Path, count: int, source: str) -> None:
    """The output-is-an-input rule for a batch: none of the files it writes over is one the recipe reads.

    Inputs exist, so only files already in the folder can be one (by inode: links count).
    """
    if not folder.is_dir():
        return
    inputs = [(field_path(loc), path) for loc, path in recipe.input_images()]
    written = [folder / MANIFEST, folder / CONTACT_SHEET, *(folder / tile_name(i) for i in range(count))]
    for path in written:
        clash = input_clash(path, inputs) if path.exists() else None
        if clash:
            raise TexsynthError(located(source, "out", clash))


def _keep(
    recipe: Recipe, identity: str, folder: Path, index: int, synthesis: Synthesis, item: int, seconds: float
) -> Tile:
    """Write one tile, unless it failed (non-finite loss or pixels)."""
    one = synthesis.item(item)
    seed = one.seeds[0]
    losses = one.losses
    if not losses or not all(math.isfinite(v) for v in losses.values()) or not torch.isfinite(one.image).all():
        return Tile(index=index, seed=seed, losses=losses, seconds=seconds, error="the loss became NaN or infinite")
    tile_recipe = recipe.model_copy(update={"seed": seed})
    data = synthesis_metadata(tile_recipe, one)
    data["tile"] = {"index": index, "batch_seed": recipe.seed, "identity": identity, "seconds": seconds}
    save_image(one.image, folder / tile_name(index), data)
    return Tile(index=index, seed=seed, file=tile_name(index), losses=losses, seconds=seconds)


