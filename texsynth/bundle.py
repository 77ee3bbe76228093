"""Recipe bundles: one zip holding a recipe and every image it reads.

``pack`` writes ``recipe.yaml`` (the effective recipe, every default filled in,
image paths rewritten to ``images/<name>``), the images, and a manifest with
each file's SHA-256. Entries carry a fixed date, so packing the same recipe
twice gives the same bytes.

``open_bundle`` treats the zip as hostile, since bundles are shared like
presets. Before anything is written it refuses entries that would escape the
extraction folder (``..``, absolute or drive paths, backslashes: "zip slip"),
symbolic links and other special files, encrypted or duplicate entries, too
many files, files or totals over the size caps, and compression ratios only
a zip bomb has. Files are then streamed into a fresh private temporary folder
with exclusive creates, counting bytes rather than trusting the headers, and
checked against the manifest's hashes. The recipe may only read files inside
the bundle, images are refused above PIL's decompression-bomb pixel limit
(``Image.MAX_IMAGE_PIXELS``, checked from the header by ``io.probe_image``),
and the output must stay inside the output folder the user chose.
"""

from __future__ import annotations

import contextlib
import hashlib
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

import yaml

from ._version import __version__
from .errors import TexsynthError, located
from .io import atomic_write, sha256
from .messages import field_path
from .recipe import Recipe, load_recipe
from .safe_yaml import read_yaml

BUNDLE_SUFFIX = ".texsynth.zip"
RECIPE_ENTRY = "recipe.yaml"
MANIFEST_ENTRY = "texsynth-bundle.json"
BUNDLE_FORMAT = 1

MAX_FILES = 64
MAX_FILE_BYTES = 64 * 2**20
MAX_TOTAL_BYTES = 256 * 2**20
#: Deflate reaches about 1000:1 only on degenerate data; real images and YAML stay far below.
MAX_COMPRESSION_RATIO = 100
_FIXED_DATE = (1980, 1, 1, 0, 0, 0)
_CHUNK = 1 << 16


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


# ---------------------------------------------------------------- packing


@dataclass(frozen=True)
class Packed:
    path: Path
    files: list[str]  # entry names, recipe first


def pack(recipe_path: Path, output: Path) -> Packed:
    """Write the recipe at ``recipe_path`` and every image it reads into the zip ``output``."""
    recipe_path, output = Path(recipe_path), Path(output)
    if not output.name.endswith(".zip"):
        raise TexsynthError(f"{output}: output: a bundle must end in {BUNDLE_SUFFIX}")
    recipe = load_recipe(recipe_path)
    if recipe.weights is not None:
        raise TexsynthError(
            located(str(recipe_path), "weights", "a bundle cannot carry VGG weights files; remove weights: to pack it")
        )
    entries: dict[str, Path] = {}  # entry name -> file
    by_hash: dict[str, str] = {}  # sha256 -> entry name, so an image used twice is stored once
    renamed: dict[Path, str] = {}
    for _, path in recipe.input_images():
        digest = sha256(path)
        if digest not in by_hash:
            by_hash[digest] = _free_name(f"images/{path.name}", entries)
            entries[by_hash[digest]] = path
        renamed[path] = by_hash[digest]
    text = _bundled_recipe(recipe, renamed, recipe_path.name)
    manifest = {
        "format": BUNDLE_FORMAT,
        "texsynth": __version__,
        "recipe": RECIPE_ENTRY,
        "files": {RECIPE_ENTRY: _text_sha256(text), **{name: sha256(path) for name, path in entries.items()}},
    }
    with atomic_write(output) as handle, zipfile.ZipFile(handle, "w") as archive:
        _add(archive, RECIPE_ENTRY, text.encode(), zipfile.ZIP_DEFLATED)
        for name, path in entries.items():
            # Images are already compressed: store them as they are.
            _add(archive, name, path.read_bytes(), zipfile.ZIP_STORED)
        _add(archive, MANIFEST_ENTRY, json.dumps(manifest, indent=2).encode(), zipfile.ZIP_DEFLATED)
    return Packed(path=output, files=[RECIPE_ENTRY, *entries, MANIFEST_ENTRY])


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
    header = f"# Packed from {origin} by texsynth {__version__}; run it with: texsynth recipe BUNDLE.zip\n"
    return header + yaml.safe_dump(data, sort_keys=False)


def _text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _add(archive: zipfile.ZipFile, name: str, data: bytes, compression: int) -> None:
    info = zipfile.ZipInfo(name, date_time=_FIXED_DATE)
    info.compress_type = compression
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    archive.writestr(info, data)


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
    recipe = _recipe_entry(path, root, [parts for _, parts in entries])
    return Bundle(path=path, root=root, recipe=recipe, sha256=sha256(path))


def _checked_entries(path: Path, archive: zipfile.ZipFile) -> list[tuple[zipfile.ZipInfo, tuple[str, ...]]]:
    infos = archive.infolist()
    if len(infos) > MAX_FILES:
        raise TexsynthError(f"{path}: bundle has {len(infos)} entries; at most {MAX_FILES} are allowed")
    entries, seen, total = [], set(), 0
    for info in infos:
        name = info.filename
        parts = _safe_parts(path, name)
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
        if info.file_size > MAX_FILE_BYTES:
            raise TexsynthError(f"{path}: {name}: {info.file_size} bytes is over the {MAX_FILE_BYTES} byte limit")
        if info.file_size > _CHUNK and info.file_size > MAX_COMPRESSION_RATIO * max(info.compress_size, 1):
            raise TexsynthError(f"{path}: {name}: compressed over {MAX_COMPRESSION_RATIO}:1, refused as a zip bomb")
        total += info.file_size
        if total > MAX_TOTAL_BYTES:
            raise TexsynthError(f"{path}: bundle unpacks to more than {MAX_TOTAL_BYTES} bytes")
        entries.append((info, parts))
    return entries


_DRIVE = re.compile(r"^[A-Za-z]:")


def _safe_parts(path: Path, name: str) -> tuple[str, ...]:
    """The entry's path components, or an error if it could land outside the extraction folder."""
    if name.startswith("/") or _DRIVE.match(name):
        raise TexsynthError(f"{path}: {name}: absolute paths are not allowed in a bundle")
    if "\\" in name or "\x00" in name:
        raise TexsynthError(f"{path}: {name}: backslashes and NUL characters are not allowed in entry names")
    parts = PurePosixPath(name).parts
    if not parts or any(part in ("..", ".") for part in parts) or "//" in name:
        raise TexsynthError(f"{path}: {name}: entry path escapes the bundle")
    return parts


def _extract(path: Path, archive: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, root: Path) -> None:
    if not target.resolve().is_relative_to(root):  # belt and braces after _safe_parts
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


def _recipe_entry(path: Path, root: Path, names: list[tuple[str, ...]]) -> Path:
    manifest_path = root / MANIFEST_ENTRY
    if manifest_path.is_file():
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            recipe_name, files = manifest["recipe"], manifest["files"]
        except (ValueError, KeyError, TypeError):
            raise TexsynthError(f"{path}: {MANIFEST_ENTRY}: unreadable manifest") from None
        if not isinstance(manifest.get("format"), int) or manifest["format"] > BUNDLE_FORMAT:
            raise TexsynthError(
                f"{path}: bundle format {manifest.get('format')!r} is newer than texsynth {__version__} reads; "
                "upgrade texsynth"
            )
        for name, digest in dict(files).items():
            parts = _safe_parts(path, str(name))
            file = root.joinpath(*parts)
            if not file.is_file():
                raise TexsynthError(f"{path}: {name}: listed in the manifest but missing")
            if sha256(file) != digest:
                raise TexsynthError(f"{path}: {name}: does not match its hash in the manifest (damaged bundle?)")
        return root.joinpath(*_safe_parts(path, str(recipe_name)))
    recipes = [parts for parts in names if len(parts) == 1 and parts[0].endswith((".yaml", ".yml"))]
    if len(recipes) != 1:
        raise TexsynthError(f"{path}: a bundle needs exactly one recipe (.yaml) at its top level, found {len(recipes)}")
    return root / recipes[0][0]


def load_bundled_recipe(
    bundle: Bundle, *, out_dir: Path, overrides: Mapping[str, Any] | None = None
) -> tuple[Recipe, Origin]:
    """The bundle's recipe, reading only files inside the bundle and writing only inside ``out_dir``.

    An ``output`` override (the user's own -o) is trusted; the recipe's own
    ``output`` is taken relative to ``out_dir`` and must stay inside it.
    """
    overrides = dict(overrides or {})
    name = bundle_name(bundle.path)
    if overrides.get("output") is None:
        overrides["output"] = str(_confined_output(bundle, out_dir, name))
    recipe = load_recipe(bundle.recipe, overrides=overrides, source=bundle.source, name=name)
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
    folder = Path(out_dir).expanduser().resolve()
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
