"""A folder of tiles: the PNGs (each with its recipe identity embedded), the manifest, its lock, a contact sheet.

The PNGs are the truth: a tile counts as done when its file decodes and its
embedded metadata names the same recipe identity and seed, so a run killed at
any moment (even between writing a tile and the manifest) resumes where it
stopped, and the manifest, merged under a file lock by every process writing
into the folder, is rebuilt from the tiles it missed (malformed entries are
dropped and rebuilt the same way).

Who owns a folder (:func:`check_folder`): the recipe its manifest names, and
the recipe each tile carries. A folder where either names another recipe is
refused unless ``force``. A damaged tile or manifest (one that does not decode
or parse) is this recipe's to remake only if the folder is otherwise this
recipe's; in a folder nothing claims, it may be another program's file and is
refused as well. Names texsynth writes that are folders are refused, even with
``force``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ._version import __version__
from .errors import TexsynthError, located, shown
from .files import atomic_write, writable_problem
from .io import probe_image, read_metadata, save_image
from .recipe import Recipe

MANIFEST = "manifest.json"
CONTACT_SHEET = "contact-sheet.png"
_LOCK = ".manifest.lock"
#: Long side of each tile on the contact sheet.
THUMBNAIL = 128
#: Tiles on the contact sheet, the first by index: 1024 thumbnails make a 4096 px square.
MAX_SHEET_TILES = 1024
#: Largest manifest read back: 100,000 tiles take about 15 MB.
MAX_MANIFEST_BYTES = 64 * 2**20
#: Pixels ``tile_grid`` makes at most: 8192 × 8192, 192 MB of RGB.
MAX_GRID_PIXELS = 8192 * 8192


def tile_name(index: int) -> str:
    return f"tile-{index:05d}.png"


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
        data = {
            "index": self.index,
            "seed": self.seed,
            "file": self.file,
            "losses": self.losses,
            "seconds": self.seconds,
        }
        if self.error is not None:
            data["error"] = self.error
        return data


def folder_problem(folder: Path) -> str | None:
    """Why tiles could not be written into ``folder``, or None (nothing is created)."""
    if folder.exists() and not folder.is_dir():
        return f"{folder} is a file, not a folder"
    for name in (MANIFEST, CONTACT_SHEET, _LOCK):
        if (folder / name).exists() and not (folder / name).is_file():
            return f"{folder / name} is not a file"
    return writable_problem(folder / tile_name(0))


def check_folder(folder: Path, identity: str, *, force: bool, source: str) -> None:
    """Refuse a folder that is a file, cannot be written, or belongs to another recipe (unless ``force``)."""
    problem = folder_problem(folder) or _tile_folder_problem(folder)
    if problem:
        raise TexsynthError(located(source, "out", problem))
    problem = None if force else _ownership_problem(folder, identity)
    if problem:
        raise TexsynthError(
            located(source, "out", f"{problem}; choose another folder or pass --force to replace them")
        )


def _tile_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("tile-*.png")) if folder.is_dir() else []


def _tile_folder_problem(folder: Path) -> str | None:
    for path in _tile_files(folder):
        if not path.is_file():
            return f"{path} is not a file"
    return None


def _ownership_problem(folder: Path, identity: str) -> str | None:
    """Why ``folder`` is not this recipe's to write into (see the module docstring), or None."""
    # Existence first, then the content: another rank may write the manifest meanwhile, and
    # writes are atomic, so a manifest that existed before reading is complete.
    had_manifest = (folder / MANIFEST).exists()
    manifest = read_manifest(folder)
    if manifest is not None and manifest["identity"] != identity:
        return (
            f"{folder} holds tiles of another recipe (manifest identity {shown(manifest['identity'], 40)}, "
            f"this recipe {identity})"
        )
    claimed = manifest is not None
    unreadable = []
    for path in _tile_files(folder):
        owner = _tile_owner(path)
        if owner is None:
            unreadable.append(path)
        elif owner != identity:
            return (
                f"{folder} holds tiles of another recipe ({path.name} has identity {shown(owner, 40)}, "
                f"this recipe {identity})"
            )
        else:
            claimed = True
    if not claimed and had_manifest:
        return f"{folder / MANIFEST} is not a texsynth batch manifest (damaged, or another program's)"
    if not claimed and unreadable:
        return f"{unreadable[0]} is not a readable texsynth tile (damaged, or another program's)"
    return None


def _tile_owner(path: Path) -> str | None:
    """The recipe identity a tile file carries (its metadata only, not its pixels), or None."""
    try:
        meta = read_metadata(path, decode=False)
    except TexsynthError:
        return None
    tile = (meta or {}).get("tile")
    owner = tile.get("identity") if isinstance(tile, dict) else None
    return owner if isinstance(owner, str) else None


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The folder's manifest if it is a texsynth batch manifest (a JSON object naming an identity), else None."""
    path = folder / MANIFEST
    try:
        if not path.is_file() or path.stat().st_size > MAX_MANIFEST_BYTES:
            return None
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("identity"), str) else None


def manifest_entries(manifest: dict[str, Any] | None) -> dict[int, dict[str, Any]]:
    """The manifest's well-formed tile entries by index; anything else is dropped (the PNGs rebuild it)."""
    tiles = manifest.get("tiles") if manifest is not None else None
    entries: dict[int, dict[str, Any]] = {}
    for entry in tiles if isinstance(tiles, list) else []:
        index = entry.get("index") if isinstance(entry, dict) else None
        if type(index) is int and index >= 0 and entry.get("file") in (None, tile_name(index)):
            entries[index] = entry
    return entries


def completed(folder: Path, identity: str) -> dict[int, Tile]:
    """Tiles already in ``folder`` for this recipe identity, read from the PNGs themselves.

    A tile is finished when it decodes and carries this identity, its own index and a seed.
    """
    done: dict[int, Tile] = {}
    for path in _tile_files(folder):
        tile = _finished_tile(path, identity)
        if tile is not None:
            done[tile.index] = tile
    return done


def _finished_tile(path: Path, identity: str) -> Tile | None:
    try:
        meta = read_metadata(path) or {}
    except TexsynthError:  # damaged: it is made again
        return None
    tile, seed, losses = meta.get("tile"), meta.get("seed"), meta.get("losses")
    if not isinstance(tile, dict) or tile.get("identity") != identity or type(seed) is not int:
        return None
    index, seconds = tile.get("index"), tile.get("seconds", 0.0)
    if type(index) is not int or path.name != tile_name(index):
        return None
    return Tile(
        index=index,
        seed=seed,
        file=path.name,
        losses=losses if isinstance(losses, dict) else {},
        seconds=seconds if isinstance(seconds, (int, float)) else 0.0,
    )


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on the folder's manifest, shared by all processes writing into it."""
    with open(folder / _LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def update_manifest(
    folder: Path,
    recipe: Recipe | Mapping[str, Any],
    identity: str,
    tiles: list[Tile],
    *,
    replace: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """Merge ``tiles`` into the manifest under a lock (read, merge by index, atomic write).

    ``recipe`` is a Recipe or its portable form (a model's, for samples); ``extra``
    adds fields to the manifest (what made the tiles, when not the recipe alone).
    """
    with _locked(folder):
        manifest = read_manifest(folder)
        entries: dict[int, dict[str, Any]] = {}
        if manifest is not None and manifest["identity"] == identity and not replace:
            entries = manifest_entries(manifest)
        for tile in tiles:
            entries[tile.index] = tile.entry()
        data = {
            "texsynth": __version__,
            "identity": identity,
            "recipe": recipe.portable() if isinstance(recipe, Recipe) else dict(recipe),
            **(extra or {}),
            "tiles": [entries[index] for index in sorted(entries)],
        }
        with atomic_write(folder / MANIFEST, "w") as handle:
            json.dump(data, handle, indent=1)


def remove_leftovers(folder: Path) -> None:
    """Temporary files of a run that was killed mid-write (only when no other process may be writing)."""
    for leftover in folder.glob(".*.part"):
        with contextlib.suppress(OSError):
            leftover.unlink()


def write_contact_sheet(folder: Path) -> Path | None:
    """The first MAX_SHEET_TILES tiles of the manifest as a grid of thumbnails, in index order."""
    entries = manifest_entries(read_manifest(folder))
    files = [folder / entry["file"] for _, entry in sorted(entries.items()) if entry.get("file")]
    thumbnails = [thumbnail for thumbnail in map(_thumbnail, files[:MAX_SHEET_TILES]) if thumbnail is not None]
    if not thumbnails:
        return None
    columns = math.ceil(math.sqrt(len(thumbnails)))
    rows = math.ceil(len(thumbnails) / columns)
    width, height = max(t.width for t in thumbnails), max(t.height for t in thumbnails)
    sheet = Image.new("RGB", (columns * width, rows * height), "white")
    for position, thumbnail in enumerate(thumbnails):
        sheet.paste(thumbnail, ((position % columns) * width, (position // columns) * height))
    return save_image(sheet, folder / CONTACT_SHEET)


def _thumbnail(path: Path) -> Image.Image | None:
    """A tile's thumbnail; None for one that went missing or cannot be decoded (it is made again next run)."""
    if probe_image(path) is not None:
        return None
    with Image.open(path) as opened:
        thumbnail = opened.convert("RGB")
    thumbnail.thumbnail((THUMBNAIL, THUMBNAIL))
    return thumbnail


def grid_problem(size: tuple[int, int], grid: int) -> str | None:
    """Why a ``grid`` × ``grid`` repeat of an image of ``size`` is too large to make, or None."""
    width, height = size[0] * grid, size[1] * grid
    if width * height > MAX_GRID_PIXELS:
        return (
            f"{grid}×{grid} repeats of this {size[0]}x{size[1]} image make {width}x{height} px, over the "
            f"{MAX_GRID_PIXELS} pixel limit; use a smaller grid"
        )
    return None


def tile_grid(path: Path, grid: int) -> Image.Image:
    """The image at ``path`` repeated grid × grid, to see whether its edges meet without a seam."""
    problem = probe_image(Path(path))
    if problem:
        raise TexsynthError(problem)
    with Image.open(path) as opened:
        problem = grid_problem(opened.size, grid)
        if problem:
            raise TexsynthError(f"{path}: grid: {problem}")
        image = opened.convert("RGB")
    sheet = Image.new("RGB", (image.width * grid, image.height * grid))
    for row in range(grid):
        for column in range(grid):
            sheet.paste(image, (column * image.width, row * image.height))
    return sheet
