"""Image files: loading as tensors, saving atomically with the recipe embedded.

Outputs carry their provenance: PNGs get an iTXt chunk ``texsynth`` holding
JSON (resolved recipe, seed, versions); JPEG and WebP get the same JSON in the
EXIF ImageDescription tag. Every write goes to a temporary file in the target
folder and is renamed into place, so an interrupted run never leaves a
truncated image and never clobbers a good one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError
from torch import Tensor
from torchvision.transforms.functional import pil_to_tensor, to_pil_image

from .errors import TexsynthError

METADATA_KEY = "texsynth"
_EXIF_IMAGE_DESCRIPTION = 0x010E
_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}


def probe_image(path: Path) -> str | None:
    """Why ``path`` cannot be used as an input image, or None if it can (reads the header only)."""
    if not path.exists():
        return f"no such file: {path}"
    if not path.is_file():
        return f"not a file: {path}"
    try:
        # PIL only warns between MAX_IMAGE_PIXELS and twice that; a shared recipe
        # or bundle can hold a decompression bomb, so refuse from the limit on.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
    except UnidentifiedImageError:
        return f"not an image file: {path}"
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return f"image is too large to open safely (over {Image.MAX_IMAGE_PIXELS} pixels): {path}"
    except OSError as error:
        return f"cannot read {path}: {error.strerror or error}"
    if width < 1 or height < 1:
        return f"image is empty: {path}"
    return None


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) after EXIF orientation, without decoding the pixels."""
    with _open(path) as image:
        width, height = image.size
        orientation = image.getexif().get(0x0112, 1)
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def load_image(path: Path, size: tuple[int, int] | None = None) -> Tensor:
    """Read an image as RGB floats in [0, 1], shape (1, 3, H, W), resized to ``size`` = (width, height)."""
    with _open(path) as image:
        try:
            image = ImageOps.exif_transpose(image)
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                # Transparent pixels have arbitrary colours underneath: show them as white.
                background = Image.new("RGBA", image.size, (255, 255, 255, 255))
                image = Image.alpha_composite(background, image.convert("RGBA"))
            image = image.convert("RGB")
            if size is not None and image.size != tuple(size):
                image = image.resize((size[0], size[1]), Image.Resampling.LANCZOS)
        except OSError as error:
            raise TexsynthError(f"{path}: cannot decode image: {error}") from None
    return pil_to_tensor(image).unsqueeze(0).float().div_(255.0).contiguous()  # (1, 3, H, W)


@contextlib.contextmanager
def _open(path: Path) -> Iterator[Image.Image]:
    problem = probe_image(path)
    if problem:
        raise TexsynthError(problem)
    with Image.open(path) as image:
        yield image


def to_pil(image: Tensor) -> Image.Image:
    """(1, 3, H, W) or (3, H, W) floats in [0, 1] -> 8-bit RGB PIL image."""
    if image.dim() == 4:
        image = image[0]
    pixels = image.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).cpu()
    return to_pil_image(pixels)


def save_image(image: Tensor | Image.Image, path: Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``image`` to ``path`` atomically, embedding ``metadata`` as JSON. Returns the path."""
    path = Path(path)
    picture = image if isinstance(image, Image.Image) else to_pil(image)
    image_format = _FORMATS.get(path.suffix.lower())
    if image_format is None:
        raise TexsynthError(f"{path}: output: unsupported image type {path.suffix!r}; use .png, .jpg or .webp")
    options: dict[str, Any] = {}
    text = json.dumps(metadata, sort_keys=False) if metadata is not None else None
    if image_format == "PNG":
        info = PngImagePlugin.PngInfo()
        info.add_text("Software", "texsynth")
        if text is not None:
            info.add_itxt(METADATA_KEY, text, zip=True)
        options["pnginfo"] = info
    else:
        options["quality"] = 95
        if text is not None:
            exif = Image.Exif()
            exif[_EXIF_IMAGE_DESCRIPTION] = json.dumps(metadata, ensure_ascii=True)
            options["exif"] = exif.tobytes()
    with atomic_write(path) as handle:
        picture.save(handle, format=image_format, **options)
    return path


@contextlib.contextmanager
def atomic_write(path: Path, mode: str = "wb") -> Iterator[Any]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` in one rename."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise TexsynthError(f"{path}: output: cannot create folder {path.parent}: {error.strerror}") from None
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(descriptor, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        # mkstemp makes the file private (0600); an output should get the usual permissions.
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_metadata(path: Path) -> dict[str, Any] | None:
    """The texsynth metadata embedded in an output image, or None if it has none."""
    with _open(Path(path)) as image:
        text = image.info.get(METADATA_KEY) if image.format == "PNG" else image.getexif().get(_EXIF_IMAGE_DESCRIPTION)
    if not text:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        return None
    return data if isinstance(data, dict) else None


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def writable_problem(path: Path) -> str | None:
    """Why ``path`` could not be written as an output file, without creating anything."""
    path = Path(path)
    if path.is_dir():
        return f"{path} is a folder"
    folder = path.parent
    while not folder.exists():
        if folder == folder.parent:
            break
        folder = folder.parent
    if not folder.is_dir():
        return f"cannot create folder {path.parent}: {folder} is not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"folder {folder} is not writable"
    return None
