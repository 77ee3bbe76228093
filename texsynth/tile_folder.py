"""A folder of tiles: the PNGs (each with its recipe identity embedded), the manifest, its lock, a contact sheet.

The PNGs are the truth: a tile counts as done when its file exists and its
embedded metadata names the same recipe identity and seed, so a run killed at
any moment (even between writing a tile and the manifest) resumes where it
stopped, and the manifest, merged under a file lock by every process writing
into the folder, is rebuilt from the tiles it missed.
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
from .errors import TexsynthError, located
from .io import atomic_write, probe_image, read_metadata, save_image, writable_problem
from .recipe import Recipe

MANIFEST = "manifest.json"
CONTACT_SHEET = "contact-sheet.png"
_LOCK = ".manifest.lock"
#: Long side of each tile on the contact sheet.
THUMBNAIL = 128



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
    return writable_problem(folder / tile_name(0))


def check_folder(folder: Path, identity: str, *, force: bool, source: str) -> None:
    """Refuse a folder that is a file, cannot be written, or holds another recipe's tiles (unless ``force``)."""
    problem = folder_problem(folder)
    if problem:
        raise TexsynthError(located(source, "out", problem))
    manifest = read_manifest(folder)
    if manifest is not None and manifest.get("identity") != identity and not force:
        raise TexsynthError(
            located(
                source,
                "out",
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
        if manifest is not None and manifest.get("identity") == identity and not replace:
            entries = {entry["index"]: entry for entry in manifest.get("tiles", [])}
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
        with Image.open(path) as opened:
            thumbnail = opened.convert("RGB")
        thumbnail.thumbnail((THUMBNAIL, THUMBNAIL))
        thumbnails.append(thumbnail)
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
    with Image.open(path) as opened:
        image = opened.convert("RGB")
        sheet = Image.new("RGB", (image.width * grid, image.height * grid))
        for row in range(grid):
            for column in range(grid):
                sheet.paste(image, (column * image.width, row * image.height))
    return sheet
