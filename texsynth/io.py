"""Image files: loading as tensors, saving atomically with the recipe embedded.

Outputs carry their provenance: PNGs get an iTXt chunk ``texsynth`` holding
JSON (resolved recipe, seed, versions); JPEG and WebP get the same JSON in the
EXIF ImageDescription tag. Every write goes through ``files.atomic_write``, so
an interrupted run never leaves a truncated image and never clobbers a good one.

Input images are treated as hostile: :func:`probe_image` decodes every pixel
(a truncated file or one with a bad checksum fails there, when a recipe is
checked, not mid-run), and embedded metadata is read with bounds on its size
and nesting (:func:`read_metadata`).
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError
from torch import Tensor
from torchvision.transforms.functional import pil_to_tensor, to_pil_image

from .errors import TexsynthError
from .files import atomic_write, sha256, writable_problem

__all__ = [
    "METADATA_KEY",
    "atomic_write",
    "image_format",
    "image_size",
    "load_image",
    "metadata_problem",
    "probe_image",
    "read_metadata",
    "save_image",
    "sha256",
    "to_pil",
    "writable_problem",
]

METADATA_KEY = "texsynth"
_EXIF_IMAGE_DESCRIPTION = 0x010E
_EXIF_ORIENTATION = 0x0112
_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
#: Largest EXIF block a JPEG holds: one APP1 marker segment (Pillow's MAX_BYTES_IN_MARKER).
JPEG_EXIF_LIMIT = 65533
#: Largest embedded metadata read back. Texsynth's own is a few kB; Pillow's limit
#: on a compressed text chunk is the same.
MAX_METADATA_BYTES = 1 << 20
#: Deepest nesting of embedded metadata read back (texsynth's own is 4 deep).
MAX_METADATA_DEPTH = 16


def probe_image(path: Path) -> str | None:
    """Why ``path`` cannot be used as an input image, or None if it can.

    Decodes the whole image: a damaged file must fail when its recipe is
    checked, with the recipe's field in the message, not halfway through a run.
    """
    if not path.exists():
        return f"no such file: {path}"
    if not path.is_file():
        return f"not a file: {path}"
    try:
        with _opened(path) as image:
            width, height = image.size
            image.load()
            image.getexif().get(_EXIF_ORIENTATION)
    except UnidentifiedImageError:
        return f"not an image file: {path}"
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return f"image is too large to open safely (over {Image.MAX_IMAGE_PIXELS} pixels): {path}"
    except OSError as error:
        if error.errno is not None:
            return f"cannot read {path}: {error.strerror or error}"
        return _damaged(path, error)
    except Exception as error:  # Pillow's decoders raise many types on damaged data
        return _damaged(path, error)
    if width < 1 or height < 1:
        return f"image is empty: {path}"
    return None


def _damaged(path: Path, error: BaseException) -> str:
    return f"cannot decode {path}: {str(error) or type(error).__name__} (damaged or truncated image?)"


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[Image.Image]:
    # PIL only warns between MAX_IMAGE_PIXELS and twice that; a shared recipe
    # or bundle can hold a decompression bomb, so refuse from the limit on.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as image:
            yield image


@contextlib.contextmanager
def _open(path: Path) -> Iterator[Image.Image]:
    """The image at ``path``, checked by :func:`probe_image` first; a TexsynthError if it is unusable."""
    problem = probe_image(path)
    if problem:
        raise TexsynthError(problem)
    with _opened(path) as image:
        yield image


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) after EXIF orientation, from the header (the pixels are checked by probe_image)."""
    try:
        with _opened(path) as image:
            width, height = image.size
            orientation = image.getexif().get(_EXIF_ORIENTATION, 1)
    except Exception:  # not an image, or damaged: probe_image says which
        raise TexsynthError(probe_image(path) or _damaged(path, ValueError("unreadable header"))) from None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def image_format(path: Path) -> str | None:
    """The format an output path is written in (``PNG``, ``JPEG``, ``WEBP``), from its suffix."""
    return _FORMATS.get(Path(path).suffix.lower())


def load_image(path: Path, size: tuple[int, int] | None = None) -> Tensor:
    """Read an image as RGB floats in [0, 1], shape (1, 3, H, W), resized to ``size`` = (width, height)."""
    try:
        with _opened(path) as image:
            image = ImageOps.exif_transpose(image)
            if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
                # Transparent pixels have arbitrary colours underneath: show them as white.
                background = Image.new("RGBA", image.size, (255, 255, 255, 255))
                image = Image.alpha_composite(background, image.convert("RGBA"))
            image = image.convert("RGB")
            if size is not None and image.size != tuple(size):
                image = image.resize((size[0], size[1]), Image.Resampling.LANCZOS)
    except Exception as error:  # missing, not an image, or damaged (checked recipes have been decoded once)
        raise TexsynthError(probe_image(path) or _damaged(path, error)) from None
    return pil_to_tensor(image).unsqueeze(0).float().div_(255.0).contiguous()  # (1, 3, H, W)


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
    if image_format == "PNG":
        text = json.dumps(metadata, sort_keys=False) if metadata is not None else None
        info = PngImagePlugin.PngInfo()
        info.add_text("Software", "texsynth")
        if text is not None:
            info.add_itxt(METADATA_KEY, text, zip=True)
        options["pnginfo"] = info
    else:
        options["quality"] = 95
        if metadata is not None:
            problem = metadata_problem(path, metadata)
            if problem:
                raise TexsynthError(f"{path}: output: {problem}")
            options["exif"] = _exif(metadata)
    with atomic_write(path) as handle:
        picture.save(handle, format=image_format, **options)
    return path


def _exif(metadata: dict[str, Any]) -> bytes:
    exif = Image.Exif()
    exif[_EXIF_IMAGE_DESCRIPTION] = json.dumps(metadata, ensure_ascii=True)
    return exif.tobytes()


def metadata_problem(path: Path, metadata: dict[str, Any]) -> str | None:
    """Why ``metadata`` does not fit in the image file ``path``, or None: a JPEG's EXIF holds 64 kB."""
    if image_format(path) != "JPEG":
        return None
    size = len(_exif(metadata))
    if size <= JPEG_EXIF_LIMIT:
        return None
    return (
        f"the recipe and input list to embed take {size} bytes, more than a JPEG's EXIF holds "
        f"({JPEG_EXIF_LIMIT}); write a .png or .webp instead"
    )


def read_metadata(path: Path, *, decode: bool = True) -> dict[str, Any] | None:
    """The texsynth metadata embedded in an output image, or None if it has none.

    A TexsynthError if it is there but unreadable: over MAX_METADATA_BYTES,
    nested deeper than MAX_METADATA_DEPTH, not JSON, or in a chunk Pillow
    refuses; or if the image does not decode (``decode=False`` reads only the
    header and metadata, for a quick look).
    """
    path = Path(path)
    try:
        with _open(path) if decode else _opened(path) as image:
            text = image.info.get(METADATA_KEY) if image.format == "PNG" else _description(image)
    except TexsynthError:
        raise
    except Exception as error:  # Pillow refuses oversized or damaged text chunks with several types
        raise TexsynthError(f"{path}: cannot read its embedded metadata ({error})") from None
    if not text:
        return None
    if not isinstance(text, str) or len(text) > MAX_METADATA_BYTES:
        raise TexsynthError(
            f"{path}: embedded metadata is not texsynth's (not text, or over {MAX_METADATA_BYTES} bytes)"
        )
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        raise TexsynthError(f"{path}: embedded texsynth metadata is damaged (not valid JSON)") from None
    if not isinstance(data, dict):
        return None
    if _depth(data) > MAX_METADATA_DEPTH:
        raise TexsynthError(f"{path}: embedded metadata is nested deeper than {MAX_METADATA_DEPTH} levels")
    return data


def _description(image: Image.Image) -> Any:
    return image.getexif().get(_EXIF_IMAGE_DESCRIPTION)


def _depth(data: Any) -> int:
    """How deeply lists and mappings nest in ``data`` (1 for a flat one), without recursion."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, (list, dict)):
            deepest = max(deepest, depth)
            stack.extend((item, depth + 1) for item in (value.values() if isinstance(value, dict) else value))
    return deepest
