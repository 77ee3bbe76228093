"""Batches of texture tiles: per-index seeds, resumable folders, manifests, contact sheets.

A batch folder holds ``tile-00017.png`` files, each with its recipe (seed
included) embedded, a ``manifest.json`` indexing them, and a contact sheet.
The PNGs are the truth: a tile counts as done when its file exists and its
embedded metadata names the same recipe identity and seed, so a run killed
at any moment (even between writing a tile and the manifest) resumes where it
stopped, and the manifest is rebuilt from the tiles it missed. Tile ``i``'s
seed derives from (recipe seed, i) alone, so it is the same image whatever
batch made it, and the indices split across torchrun ranks by ``i % world``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from . import __version__
from .api import Synthesis, metadata, output_size, sha256, synthesize
from .errors import TexsynthError, located
from .features import activation_elements
from .io import atomic_write, probe_image, read_metadata, save_image, writable_problem
from .recipe import Recipe

MANIFEST = "manifest.json"
CONTACT_SHEET = "contact-sheet.png"
_LOCK = ".manifest.lock"
#: Long side of each tile on the contact sheet.
THUMBNAIL = 128


#: Batch size on the CPU: batching buys little there (the convolutions already
#: use every core) but keeps the per-batch overhead down.
CPU_BATCH = 4
#: Most tiles per batch on a GPU, and the share of free memory a batch may take.
MAX_GPU_BATCH = 32
GPU_MEMORY_SHARE = 0.6


def auto_batch_size(recipe: Recipe, device: torch.device, width: int, height: int) -> int:
    """How many tiles to optimize at once: from free GPU memory, or a small fixed number elsewhere."""
    if device.type != "cuda":
        return CPU_BATCH
    free, _ = torch.cuda.mem_get_info(device)
    # Activations kept for the backward pass plus their gradients, in fp32 to be safe,
    # and the L-BFGS history: 2 × 50 image-sized vectors.
    per_tile = 4 * (2 * activation_elements(recipe.layers, width, height) + 2 * 50 * 3 * width * height)
    return max(1, min(MAX_GPU_BATCH, int(GPU_MEMORY_SHARE * free // per_tile)))


def tile_name(index: int) -> str:
    return f"tile-{index:05d}.png"


def tile_seed(recipe_seed: int, index: int) -> int:
    """The seed of tile ``index``: drawn from a generator seeded by (recipe seed, index) alone."""
    generator = torch.Generator().manual_seed((recipe_seed * 1_000_003 + index) % 2**63)
    return int(torch.randint(0, 2**62, (1,), generator=generator))


def recipe_identity(recipe: Recipe) -> str:
    """A hash of everything that shapes a tile: the effective recipe with images by content, not path.

    The output path is left out, and so are image paths, so moving a folder of
    recipe + images keeps its tiles valid.
    """
    data = {key: value for key, value in recipe.to_dict().items() if key != "output"}
    digests = {str(path): sha256(path) for _, path in recipe.input_images()}
    text = json.dumps(data, sort_keys=True)
    for path, digest in digests.items():
        text = text.replace(json.dumps(path), json.dumps(digest))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Shard:
    """This process's share of tile indices under torchrun (rank of world); one process by default."""

    rank: int = 0
    world: int = 1

    def indices(self, count: int) -> list[int]:
        return [index for index in range(count) if index % self.world == self.rank]


def join_torchrun() -> Shard:
    """This process's shard: from torchrun's environment (joining its process group), else the whole batch.

    The group only synchronizes the end of the run (gloo works on CPU and GPU
    machines alike); tiles and the manifest go through the shared folder.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Shard()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="gloo")
    return Shard(rank=dist.get_rank(), world=dist.get_world_size())


def local_device(shard: Shard) -> str | None:
    """Under torchrun on a GPU machine, each process takes the GPU of its local rank."""
    if shard.world > 1 and torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0')) % torch.cuda.device_count()}"
    return None


def wait_for_all(shard: Shard) -> None:
    """Block until every rank has finished its share (no-op for one process)."""
    if shard.world > 1:
        import torch.distributed as dist

        dist.barrier()


def leave_torchrun(shard: Shard) -> None:
    if shard.world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()


@dataclass(frozen=True)
class Tile:
    """One tile's outcome: made (``file`` set) or failed (``error`` set)."""

    index: int
    seed: int
    file: str | None = None
    losses: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0
    error: str | None = None

    def entry(self) -> dict[str, Any]:
        data = {"index": self.index, "seed": self.seed, "file": self.file, "losses": self.losses, "seconds": self.seconds}
        if self.error is not None:
            data["error"] = self.error
        return data


@dataclass
class BatchReport:
    folder: Path
    wanted: int  # tiles this process was responsible for
    skipped: list[int] = field(default_factory=list)  # already complete
    made: list[Tile] = field(default_factory=list)
    failed: list[Tile] = field(default_factory=list)
    interrupted: bool = False


def check_folder(folder: Path, identity: str, *, force: bool, source: str) -> None:
    """Refuse a folder that is a file, cannot be written, or holds another recipe's tiles (unless ``force``)."""
    if folder.exists() and not folder.is_dir():
        raise TexsynthError(located(source, "--out", f"{folder} is a file, not a folder"))
    problem = writable_problem(folder / tile_name(0))
    if problem:
        raise TexsynthError(located(source, "--out", problem))
    manifest = read_manifest(folder)
    if manifest is not None and manifest.get("identity") != identity and not force:
        raise TexsynthError(
            located(
                source,
                "--out",
                f"{folder} holds tiles of another recipe (manifest identity {manifest.get('identity')}, "
                f"this recipe {identity}); choose another folder or pass --force to replace them",
            )
        )


def read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        data = json.loads((folder / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def completed(folder: Path, identity: str) -> dict[int, Tile]:
    """Tiles already in ``folder`` for this recipe identity, read from the PNGs themselves."""
    done: dict[int, Tile] = {}
    for path in sorted(folder.glob("tile-*.png")):
        try:
            meta = read_metadata(path)
        except TexsynthError:
            continue
        tile = (meta or {}).get("tile", {})
        if tile.get("identity") == identity and path.name == tile_name(tile.get("index", -1)):
            done[tile["index"]] = Tile(
                index=tile["index"],
                seed=meta["seed"],  # type: ignore[index]
                file=path.name,
                losses=meta.get("losses", {}),  # type: ignore[union-attr]
                seconds=tile.get("seconds", 0.0),
            )
    return done


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on the folder's manifest, shared by all processes writing into it."""
    with open(folder / _LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def update_manifest(folder: Path, recipe: Recipe, identity: str, tiles: list[Tile], *, replace: bool = False) -> None:
    """Merge ``tiles`` into the manifest under a lock (read, merge by index, atomic write)."""
    with _locked(folder):
        manifest = read_manifest(folder)
        entries: dict[int, dict[str, Any]] = {}
        if manifest is not None and manifest.get("identity") == identity and not replace:
            entries = {entry["index"]: entry for entry in manifest.get("tiles", [])}
        for tile in tiles:
            entries[tile.index] = tile.entry()
        data = {
            "texsynth": __version__,
            "identity": identity,
            "recipe": {key: value for key, value in recipe.to_dict().items() if key != "output"},
            "tiles": [entries[index] for index in sorted(entries)],
        }
        with atomic_write(folder / MANIFEST, "w") as handle:
            json.dump(data, handle, indent=1)


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
    if count < 1:
        raise TexsynthError(located(source, "--count", f"must be at least 1, got {count}"))
    if batch_size is not None and batch_size < 1:
        raise TexsynthError(located(source, "--batch-size", f"must be at least 1, got {batch_size}"))
    device = torch.device(device)
    batch_size = batch_size or auto_batch_size(recipe, device, *output_size(recipe))
    identity = recipe_identity(recipe)
    check_folder(folder, identity, force=force, source=source)
    folder.mkdir(parents=True, exist_ok=True)
    if shard.world == 1:
        _remove_leftovers(folder)
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


def _remove_leftovers(folder: Path) -> None:
    """Temporary files of a run that was killed mid-write (only when no other process may be writing)."""
    for leftover in folder.glob(".*.part"):
        with contextlib.suppress(OSError):
            leftover.unlink()


def _keep(recipe: Recipe, identity: str, folder: Path, index: int, synthesis: Synthesis, item: int, seconds: float) -> Tile:
    """Write one tile, unless it failed (non-finite loss or pixels)."""
    one = synthesis.item(item)
    seed = one.seeds[0]
    losses = one.losses
    if not losses or not all(math.isfinite(v) for v in losses.values()) or not torch.isfinite(one.image).all():
        return Tile(index=index, seed=seed, losses=losses, seconds=seconds, error="the loss became NaN or infinite")
    tile_recipe = recipe.model_copy(update={"seed": seed})
    data = metadata(tile_recipe, one)
    data["tile"] = {"index": index, "batch_seed": recipe.seed, "identity": identity, "seconds": seconds}
    save_image(one.image, folder / tile_name(index), data)
    return Tile(index=index, seed=seed, file=tile_name(index), losses=losses, seconds=seconds)


def write_contact_sheet(folder: Path) -> Path | None:
    """All tiles of the manifest as a grid of thumbnails, in index order."""
    manifest = read_manifest(folder) or {}
    files = [folder / entry["file"] for entry in manifest.get("tiles", []) if entry.get("file")]
    files = [path for path in files if path.exists()]
    if not files:
        return None
    columns = math.ceil(math.sqrt(len(files)))
    rows = math.ceil(len(files) / columns)
    thumbnails = []
    for path in files:
        with Image.open(path) as image:
            image = image.convert("RGB")
            image.thumbnail((THUMBNAIL, THUMBNAIL))
            thumbnails.append(image)
    width, height = max(t.width for t in thumbnails), max(t.height for t in thumbnails)
    sheet = Image.new("RGB", (columns * width, rows * height), "white")
    for position, thumbnail in enumerate(thumbnails):
        sheet.paste(thumbnail, ((position % columns) * width, (position // columns) * height))
    return save_image(sheet, folder / CONTACT_SHEET)


def tile_grid(path: Path, grid: int) -> Image.Image:
    """The image at ``path`` repeated grid × grid, to see whether its edges meet without a seam."""
    problem = probe_image(Path(path))
    if problem:
        raise TexsynthError(problem)
    with Image.open(path) as image:
        image = image.convert("RGB")
        sheet = Image.new("RGB", (image.width * grid, image.height * grid))
        for row in range(grid):
            for column in range(grid):
                sheet.paste(image, (column * image.width, row * image.height))
    return sheet
