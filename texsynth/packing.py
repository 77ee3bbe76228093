"""Packing a recipe and every image it reads into one zip, a bundle that ``texsynth recipe`` runs directly.

``pack`` writes ``recipe.yaml`` (the effective recipe, every default filled in,
image paths rewritten to ``images/<name>``), the images, and a manifest with
each file's SHA-256. Entries carry a fixed date, so packing the same recipe
twice gives the same bytes.

Packing follows the reader's rules (:mod:`texsynth.bundle`) through the same
checks, with the same messages, before anything is written, so it never writes
a bundle that ``texsynth recipe`` then refuses: entry names are made safe (a
backslash, or what UTF-8 cannot hold, becomes ``_``), too many or too large
files are refused, and a text entry too large for the zip-bomb ratio check is
stored uncompressed.
"""

from __future__ import annotations

import hashlib
import json
import stat
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ._version import __version__
from .bundle import (
    BUNDLE_FORMAT,
    BUNDLE_SUFFIX,
    MANIFEST_ENTRY,
    RECIPE_ENTRY,
    SMALL_ENTRY,
    check_entry_count,
    check_entry_size,
    entry_parts,
)
from .errors import TexsynthError, located, said
from .files import atomic_write, input_clash, writable_problem
from .messages import field_path
from .recipe import Recipe, load_recipe

_FIXED_DATE = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Packed:
    path: Path
    files: list[str]  # entry names, recipe first


def pack(recipe_path: Path, output: Path) -> Packed:
    """Write the recipe at ``recipe_path`` and every image it reads into the zip ``output``."""
    recipe_path, output = Path(recipe_path), Path(output)
    if not output.name.endswith(".zip"):
        raise TexsynthError(f"{output}: output: a bundle must end in {BUNDLE_SUFFIX}")
    problem = writable_problem(output)
    if problem:
        raise TexsynthError(f"{output}: output: {problem}")
    recipe = load_recipe(recipe_path)
    if recipe.weights is not None:
        raise TexsynthError(
            located(str(recipe_path), "weights", "a bundle cannot carry VGG weights files; remove weights: to pack it")
        )
    clash = input_clash(output, [("the recipe", recipe_path), *_inputs(recipe)])
    if clash:
        raise TexsynthError(f"{output}: output: {clash}")
    images, renamed = _images(recipe, output)
    text = _bundled_recipe(recipe, renamed, recipe_path.name).encode()
    manifest = {
        "format": BUNDLE_FORMAT,
        "texsynth": __version__,
        "recipe": RECIPE_ENTRY,
        "files": {RECIPE_ENTRY: hashlib.sha256(text).hexdigest(), **{n: _digest(d) for n, d in images.items()}},
    }
    manifest_text = json.dumps(manifest, indent=2).encode()
    total = sum(len(data) for data in images.values())
    check_entry_size(output, RECIPE_ENTRY, len(text), total + len(text))
    with atomic_write(output) as handle, zipfile.ZipFile(handle, "w") as archive:
        _add(archive, RECIPE_ENTRY, text, _text_compression(text))
        for name, data in images.items():
            # Images are already compressed: store them as they are.
            _add(archive, name, data, zipfile.ZIP_STORED)
        _add(archive, MANIFEST_ENTRY, manifest_text, _text_compression(manifest_text))
    return Packed(path=output, files=[RECIPE_ENTRY, *images, MANIFEST_ENTRY])


def _inputs(recipe: Recipe) -> list[tuple[str, Path]]:
    return [(field_path(loc), path) for loc, path in recipe.input_images()]


def _images(recipe: Recipe, output: Path) -> tuple[dict[str, bytes], dict[Path, str]]:
    """Each distinct image's entry name and bytes, and the entry name of each image path.

    Sizes are checked against the bundle's limits before each file is read.
    """
    images: dict[str, bytes] = {}  # entry name -> bytes
    by_hash: dict[str, str] = {}  # sha256 -> entry name, so an image used twice is stored once
    renamed: dict[Path, str] = {}
    total = 0
    for path in dict.fromkeys(path for _, path in recipe.input_images()):
        data = _read(path, output)
        digest = _digest(data)
        if digest not in by_hash:
            name = _free_name(_entry_name(path), images)
            entry_parts(output, name)
            check_entry_count(output, len(images) + 3)  # with the recipe and the manifest
            total += len(data)
            check_entry_size(output, name, len(data), total)
            by_hash[digest], images[name] = name, data
        renamed[path] = by_hash[digest]
    return images, renamed


def _read(path: Path, output: Path) -> bytes:
    try:
        size = path.stat().st_size
        check_entry_size(output, _entry_name(path), size, size)  # before reading a file too large to pack
        return path.read_bytes()
    except OSError as error:
        raise TexsynthError(f"{path}: cannot read: {error.strerror or error}") from None


def _entry_name(path: Path) -> str:
    """``images/<file name>``, with what a bundle may not hold in a name replaced by ``_``."""
    return "images/" + "".join(char if _allowed(char) else "_" for char in path.name)


def _allowed(char: str) -> bool:
    if char in "\\\x00":
        return False
    try:
        char.encode("utf-8")
    except UnicodeEncodeError:  # a file name that is not valid UTF-8 (surrogate escapes)
        return False
    return True


def _free_name(wanted: str, taken: Mapping[str, Any]) -> str:
    stem, suffix = wanted.rsplit(".", 1) if "." in wanted.rsplit("/", 1)[-1] else (wanted, "")
    name, count = wanted, 1
    while name.lower() in {other.lower() for other in taken}:
        count += 1
        name = f"{stem}-{count}.{suffix}" if suffix else f"{stem}-{count}"
    return name


def _bundled_recipe(recipe: Recipe, renamed: Mapping[Path, str], origin: str) -> str:
    data = recipe.portable()
    for style, bundled in zip(data["styles"], recipe.styles):
        style["image"] = renamed[bundled.image]
        if bundled.mask is not None:
            style["mask"] = renamed[bundled.mask]
    if recipe.content is not None:
        data["content"]["image"] = renamed[recipe.content.image]
    if recipe.init_image is not None:
        data["init_image"] = renamed[recipe.init_image]
    header = f"# Packed from {said(origin, 200)} by texsynth {__version__}; run it with: texsynth recipe BUNDLE.zip\n"
    return header + yaml.safe_dump(data, sort_keys=False)


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _text_compression(data: bytes) -> int:
    """Deflate text, unless it is large enough for the reader's zip-bomb ratio check to look at it."""
    return zipfile.ZIP_DEFLATED if len(data) <= SMALL_ENTRY else zipfile.ZIP_STORED


def _add(archive: zipfile.ZipFile, name: str, data: bytes, compression: int) -> None:
    info = zipfile.ZipInfo(name, date_time=_FIXED_DATE)
    info.compress_type = compression
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    archive.writestr(info, data)
