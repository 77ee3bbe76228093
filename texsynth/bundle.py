"""Recipe bundles: one zip holding a recipe and every image it reads, opened as hostile.

:mod:`texsynth.packing` writes them; this module opens them. ``open_bundle``
treats the zip as hostile, since bundles are shared like presets. Before
anything is written it refuses entries that would escape the extraction folder
(``..``, absolute or drive paths, backslashes: "zip slip"), symbolic links and
other special files, encrypted or duplicate entries, too many files, files or
totals over the size caps, and compression ratios only a zip bomb has. Files
are then streamed into a fresh private temporary folder with exclusive
creates, counting bytes rather than trusting the headers. A manifest, when
there is one, must be well-formed and list every file with its hash. The
recipe may only read files inside the bundle, images are refused above PIL's
decompression-bomb pixel limit (``Image.MAX_IMAGE_PIXELS``, checked by
``io.probe_image``), and the output must stay inside the output folder the
user chose. The rules for entries are public (``entry_parts``,
``check_entry_count``, ``check_entry_size``): packing follows the same ones,
so it never writes a bundle this module refuses.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import stat
import tempfile
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ._version import __version__
from .errors import TexsynthError, located, shown
from .files import resolved, sha256
from .messages import field_path, kind
from .recipe import Recipe, load_recipe
from .safe_yaml import read_yaml

BUNDLE_SUFFIX = ".texsynth.zip"
RECIPE_ENTRY = "recipe.yaml"
MANIFEST_ENTRY = "texsynth-bundle.json"
BUNDLE_FORMAT = 1

MAX_FILES = 64
MAX_FILE_BYTES = 64 * 2**20
MAX_TOTAL_BYTES = 256 * 2**20
#: The zip itself: its files and a generous allowance for headers.
MAX_BUNDLE_BYTES = MAX_TOTAL_BYTES + 2**20
#: Deflate reaches about 1000:1 only on degenerate data; real images and YAML stay far below.
MAX_COMPRESSION_RATIO = 100
#: Entries up to this size are never refused for their compression ratio.
SMALL_ENTRY = 1 << 16
_CHUNK = SMALL_ENTRY


def bundle_name(path: Path) -> str:
    """``my.texsynth.zip`` -> ``my``; ``my.zip`` -> ``my``."""
    name = Path(path).name
    return name[: -len(BUNDLE_SUFFIX)] if name.endswith(BUNDLE_SUFFIX) else Path(name).stem


@dataclass(frozen=True)
class Origin:
    """Where a recipe's files came from when not from the user's own folders (a bundle).

    Paths under ``root`` (a temporary folder) are recorded relative to it, and
    ``extra`` is added to the metadata, so an output says how to find its inputs again.
    """

    root: Path
    extra: dict[str, Any]


# ---------------------------------------------------------------- unpacking


@dataclass(frozen=True)
class Bundle:
    """An unpacked bundle: its files in a private temporary folder (gone when the context ends)."""

    path: Path  # as the user gave it
    root: Path
    recipe: Path
    sha256: str

    @property
    def source(self) -> str:
        """How messages name the recipe: ``my.texsynth.zip/recipe.yaml``."""
        return f"{self.path}/{self.recipe.relative_to(self.root).as_posix()}"


@contextlib.contextmanager
def open_bundle(path: Path) -> Iterator[Bundle]:
    """Check and unpack the bundle at ``path`` into a private temporary folder, removed afterwards."""
    path = Path(path)
    if not path.is_file():
        raise TexsynthError(f"{path}: no such bundle file")
    if path.stat().st_size > MAX_BUNDLE_BYTES:
        raise TexsynthError(f"{path}: bundle is {path.stat().st_size} bytes, over the {MAX_BUNDLE_BYTES} byte limit")
    root = Path(tempfile.mkdtemp(prefix="texsynth-bundle-")).resolve()
    try:
        yield _unpack(path, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _unpack(path: Path, root: Path) -> Bundle:
    try:
        with zipfile.ZipFile(path) as archive:
            entries = _checked_entries(path, archive)
            for info, parts in entries:
                _extract(path, archive, info, root.joinpath(*parts), root)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, NotImplementedError, ValueError) as error:
        raise TexsynthError(f"{path}: not a readable bundle (corrupt zip: {error})") from None
    except OSError as error:
        raise TexsynthError(f"{path}: cannot read bundle: {error.strerror or error}") from None
    recipe = _recipe_entry(path, root, [info.filename for info, _ in entries])
    return Bundle(path=path, root=root, recipe=recipe, sha256=sha256(path))


# ---------------------------------------------------------------- the rules for entries (packing follows them too)


def check_entry_count(path: Path, count: int) -> None:
    if count > MAX_FILES:
        raise TexsynthError(f"{path}: bundle has {count} entries; at most {MAX_FILES} are allowed")


def check_entry_size(path: Path, name: str, size: int, total: int) -> None:
    """One entry of ``size`` bytes, the bundle's files ``total`` bytes with it."""
    if size > MAX_FILE_BYTES:
        raise TexsynthError(f"{path}: {name}: {size} bytes is over the {MAX_FILE_BYTES} byte limit")
    if total > MAX_TOTAL_BYTES:
        raise TexsynthError(f"{path}: bundle unpacks to more than {MAX_TOTAL_BYTES} bytes")


_DRIVE = re.compile(r"^[A-Za-z]:")


def entry_parts(path: Path, name: str) -> tuple[str, ...]:
    """The entry's path components, or an error if it could land outside the extraction folder."""
    if name.startswith("/") or _DRIVE.match(name):
        raise TexsynthError(f"{path}: {name}: absolute paths are not allowed in a bundle")
    if "\\" in name or "\x00" in name:
        raise TexsynthError(f"{path}: {name}: backslashes and NUL characters are not allowed in entry names")
    parts = PurePosixPath(name).parts
    if not parts or any(part in ("..", ".") for part in parts) or "//" in name:
        raise TexsynthError(f"{path}: {name}: entry path escapes the bundle")
    return parts


def _checked_entries(path: Path, archive: zipfile.ZipFile) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    infos = archive.infolist()
    check_entry_count(path, len(infos))
    entries, seen, total = [], set(), 0
    for info in infos:
        name = info.filename
        parts = entry_parts(path, name)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise TexsynthError(f"{path}: {name}: bundles may not contain symbolic links")
        if info.is_dir():
            continue
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG):  # 0: the zip was made without Unix file types
            raise TexsynthError(f"{path}: {name}: not a regular file")
        if info.flag_bits & 0x1:
            raise TexsynthError(f"{path}: {name}: encrypted entries are not supported")
        if name.lower() in seen:
            raise TexsynthError(f"{path}: {name}: appears twice in the bundle")
        seen.add(name.lower())
        total += info.file_size
        check_entry_size(path, name, info.file_size, total)
        if info.file_size > SMALL_ENTRY and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
            raise TexsynthError(f"{path}: {name}: compressed over {MAX_COMPRESSION_RATIO}:1, refused as a zip bomb")
        entries.append((info, parts))
    return entries


def _extract(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, root: Path) -> None:
    if not target.resolve().is_relative_to(root):  # belt and braces after entry_parts
        raise TexsynthError(f"{path}: {info.filename}: entry path escapes the bundle")
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    written = 0
    # "xb": never follow or overwrite anything already there.
    with archive.open(info) as source, open(target, "xb") as sink:
        while chunk := source.read(_CHUNK):
            written += len(chunk)
            # Headers can lie about sizes; count what actually comes out.
            if written > min(info.file_size, MAX_FILE_BYTES):
                raise TexsynthError(f"{path}: {info.filename}: unpacks to more bytes than its header says")
            sink.write(chunk)


# ---------------------------------------------------------------- the manifest


def _recipe_entry(path: Path, root: Path, names: list[str]) -> Path:
    """The recipe's file: the one the manifest names (after checking every file against it), or the only YAML."""
    manifest_path = root / MANIFEST_ENTRY
    if manifest_path.is_file():
        recipe_name, files = _read_manifest(path, manifest_path)
        for name, digest in files.items():
            file = root.joinpath(*entry_parts(path, name))
            if not file.is_file():
                raise TexsynthError(f"{path}: {name}: listed in the manifest but missing")
            if sha256(file) != digest:
                raise TexsynthError(f"{path}: {name}: does not match its hash in the manifest (damaged bundle?)")
        listed = {name.lower() for name in files} | {MANIFEST_ENTRY}
        for name in names:
            if name.lower() not in listed:
                raise TexsynthError(f"{path}: {name}: not listed in the manifest (added after packing?)")
        if recipe_name not in files:
            raise TexsynthError(f"{path}: {MANIFEST_ENTRY}: recipe: {shown(recipe_name)} is not one of its files")
        return root.joinpath(*entry_parts(path, recipe_name))
    recipes = [name for name in names if "/" not in name and name.endswith((".yaml", ".yml"))]
    if len(recipes) != 1:
        raise TexsynthError(f"{path}: a bundle needs exactly one recipe (.yaml) at its top level, found {len(recipes)}")
    return root / recipes[0]


def _read_manifest(path: Path, manifest_path: Path) -> tuple[str, dict[str, str]]:
    """The manifest's recipe entry and files (entry name -> SHA-256), every field checked for its type."""
    where = f"{path}: {MANIFEST_ENTRY}"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (ValueError, RecursionError):
        raise TexsynthError(f"{where}: unreadable manifest (not JSON)") from None
    if not isinstance(manifest, dict):
        raise TexsynthError(f"{where}: a manifest must be a JSON object, got {kind(manifest)}")
    version = manifest.get("format")
    if "format" not in manifest or type(version) is not int or version < 1:
        got = "nothing" if "format" not in manifest else shown(version)
        raise TexsynthError(f"{where}: format: must be the bundle format, a whole number from 1, got {got}")
    if version > BUNDLE_FORMAT:
        raise TexsynthError(
            f"{path}: bundle format {version} is newer than texsynth {__version__} reads; upgrade texsynth"
        )
    recipe, files = manifest.get("recipe"), manifest.get("files")
    if not isinstance(recipe, str) or not recipe:
        raise TexsynthError(f"{where}: recipe: must be the recipe's entry name, got {shown(recipe)}")
    if not isinstance(files, dict) or not all(isinstance(digest, str) for digest in files.values()):
        got = kind(files) if not isinstance(files, dict) else "a value that is not a SHA-256"
        raise TexsynthError(f"{where}: files: must map each entry name to its SHA-256, got {got}")
    return recipe, files


def load_bundled_recipe(
    bundle: Bundle, *, out_dir: Path, overrides: Mapping[str, Any] | None = None
) -> tuple[Recipe, Origin]:
    """The bundle's recipe, reading only files inside the bundle and writing only inside ``out_dir``.

    An ``output`` override (the user's own -o) is trusted; the recipe's own
    ``output`` is taken relative to ``out_dir`` and must stay inside it.
    """
    overrides = dict(overrides or {})
    name = bundle_name(bundle.path)
    # The recipe's own output, confined to out_dir: still the recipe's field in messages.
    replacing = {"output": str(_confined_output(bundle, out_dir, name))} if overrides.get("output") is None else {}
    recipe = load_recipe(bundle.recipe, overrides=overrides, source=bundle.source, name=name, replacing=replacing)
    if recipe.weights is not None:
        raise TexsynthError(located(bundle.source, "weights", "a bundled recipe cannot name weights files"))
    for loc, image in recipe.input_images():
        if not image.is_relative_to(bundle.root):
            raise TexsynthError(
                located(bundle.source, field_path(loc), "a bundled recipe may only read files inside the bundle")
            )
    return recipe, bundle_origin(bundle)


def bundle_origin(bundle: Bundle) -> Origin:
    """How an output made from ``bundle`` records it: paths relative to the bundle, and the bundle itself."""
    where = {"name": bundle.path.name, "path": str(bundle.path.resolve()), "sha256": bundle.sha256}
    return Origin(root=bundle.root, extra={"bundle": where})


def _confined_output(bundle: Bundle, out_dir: Path, name: str) -> Path:
    folder = resolved(out_dir, "out_dir")
    try:
        data, _ = read_yaml(bundle.recipe.read_text(encoding="utf-8"), bundle.source)
    except (OSError, UnicodeDecodeError):
        data = None  # load_recipe reports it properly
    wanted = data.get("output") if isinstance(data, dict) else None
    relative = Path(wanted) if isinstance(wanted, str) and wanted else Path(f"{name}.png")
    target = (folder / relative).resolve()
    if relative.is_absolute() or not target.is_relative_to(folder):
        raise TexsynthError(
            located(bundle.source, "output", f"{wanted!r} would write outside the output folder {folder}")
        )
    return target
