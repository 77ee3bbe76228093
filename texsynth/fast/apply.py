"""Applying a trained transfer network: any photo in one forward pass, at exactly its own size.

The network's strided convolutions need sides divisible by 4: a photo is
mirror-padded up to that and the result cropped back, so a 67×45 photo comes
out 67×45. Photos of one size go through the network together on a GPU; the
CPU takes them one at a time, so a result is the same in any batch. EXIF
orientation is honoured, grey photos are stylized as colour ones, and a
photo's transparency is kept: it is stylized over white and its alpha channel
put back.

Large photos (``tile``, or more pixels than :data:`MAX_WHOLE_PIXELS`) are
processed in overlapping tiles, blended with weights that fall to zero at each
tile's edge, so no seam shows. Instance normalization would normalize each
tile by its own statistics and give each tile its own tone; instead every
normalization layer takes its statistics once from the whole photo at a size
that fits (:data:`STATISTICS_SIDE`), and every tile uses those.

``preserve_colour="luminance"`` keeps the photo's colours: the result's
luminance with the photo's chroma (YIQ, as ``preserve_colour: luminance``
does for the optimization path, Gatys et al. 2017).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageOps
from torch import Tensor
from torch.nn import functional as F

from .._version import __version__
from ..colour import with_chroma_of
from ..errors import TexsynthError
from ..files import input_clash
from ..io import load_image, probe_image, save_image, sha256, to_pil, writable_problem
from ..recipe import OUTPUT_SUFFIXES, PreserveColour
from .model_file import FastModel, load_model
from .networks import ConditionalInstanceNorm, TransferNetwork
from .sample import GPU_BATCH, blend_weights

#: Photos with more pixels than this are stylized in tiles (about 2048 × 2048: ~1 GB of activations on the CPU).
MAX_WHOLE_PIXELS = 2048 * 2048
#: Long side of the copy of a tiled photo that the normalization statistics come from.
STATISTICS_SIDE = 1024
#: Overlap of neighbouring tiles, as a share of the tile side.
TILE_OVERLAP = 0.25
#: The smallest tile: the network sees at least this much context.
MIN_TILE = 64


@torch.no_grad()
def stylize(
    model: FastModel,
    photos: Tensor,
    *,
    blend: Mapping[str, float] | None = None,
    device: str | torch.device = "cpu",
    tile: int | None = None,
    batch_size: int | None = None,
) -> Tensor:
    """Photos (N, 3, H, W) in [0, 1] -> stylized (N, 3, H, W) on the CPU, in one forward pass each.

    ``tile``: stylize in overlapping tiles of this side (see the module docstring).
    """
    network = model.transformer()
    device = torch.device(device)
    network.to(device).eval()
    weights = torch.tensor([blend_weights(model, blend)], dtype=torch.float32, device=device)
    height, width = photos.shape[-2:]
    if tile is not None or height * width > MAX_WHOLE_PIXELS:
        side = max(MIN_TILE, tile or 1024)
        return torch.cat([_tiled(network, photo[None], weights, side, device) for photo in photos])
    batch = 1 if device.type == "cpu" else batch_size or GPU_BATCH
    results = []
    for start in range(0, photos.shape[0], batch):
        chunk = photos[start : start + batch].to(device)
        results.append(_whole(network, chunk, weights.expand(chunk.shape[0], -1)).cpu())
    return torch.cat(results)


def _whole(network: TransferNetwork, photos: Tensor, blend: Tensor) -> Tensor:
    """The network on photos of any size: mirror-padded to its stride, cropped back."""
    height, width = photos.shape[-2:]
    stride = network.stride
    bottom, right = (-height) % stride, (-width) % stride
    padded = F.pad(photos, (0, right, 0, bottom), mode="reflect") if bottom or right else photos
    with torch.autocast(photos.device.type, dtype=torch.bfloat16, enabled=photos.device.type == "cuda"):
        result = network(padded, blend).float()
    return result[..., :height, :width]


def _tiled(network: TransferNetwork, photo: Tensor, blend: Tensor, side: int, device: torch.device) -> Tensor:
    """One photo (1, 3, H, W) in overlapping tiles that share the whole photo's normalization statistics."""
    height, width = photo.shape[-2:]
    scale = min(1.0, STATISTICS_SIDE / max(height, width))
    overview = F.interpolate(photo, scale_factor=scale, mode="area") if scale < 1 else photo
    with _frozen_statistics(_whole_statistics(network, overview.to(device), blend)):
        total = torch.zeros(1, 3, height, width)
        weight = torch.zeros(1, 1, height, width)
        for top, left, tile_height, tile_width in _tiles(height, width, side):
            piece = photo[..., top : top + tile_height, left : left + tile_width].to(device)
            window = _window(tile_height, tile_width, top, left, height, width)
            total[..., top : top + tile_height, left : left + tile_width] += (
                _whole(network, piece, blend).cpu() * window
            )
            weight[..., top : top + tile_height, left : left + tile_width] += window
    return total / weight.clamp_min(1e-12)


def _tiles(height: int, width: int, side: int) -> Iterator[tuple[int, int, int, int]]:
    """(top, left, height, width) of tiles of about ``side`` covering the photo, overlapping by TILE_OVERLAP."""
    step = max(1, int(side * (1 - TILE_OVERLAP)))
    for top in _starts(height, side, step):
        for left in _starts(width, side, step):
            yield top, left, min(side, height - top), min(side, width - left)


def _starts(length: int, side: int, step: int) -> list[int]:
    if length <= side:
        return [0]
    count = math.ceil((length - side) / step) + 1
    return [round(i * (length - side) / (count - 1)) for i in range(count)]


def _window(tile_height: int, tile_width: int, top: int, left: int, height: int, width: int) -> Tensor:
    """Blending weights (1, 1, h, w): a ramp from each inner edge of the tile, flat at the photo's own edges."""

    def ramp(length: int, starts_at_edge: bool, ends_at_edge: bool) -> Tensor:
        positions = torch.arange(length, dtype=torch.float32) + 0.5
        rise = torch.ones(length) if starts_at_edge else (positions / (length * TILE_OVERLAP)).clamp(max=1)
        fall = torch.ones(length) if ends_at_edge else ((length - positions) / (length * TILE_OVERLAP)).clamp(max=1)
        return torch.minimum(rise, fall)

    rows = ramp(tile_height, top == 0, top + tile_height == height)
    columns = ramp(tile_width, left == 0, left + tile_width == width)
    return (rows[:, None] * columns[None, :])[None, None]


def _whole_statistics(
    network: TransferNetwork, photo: Tensor, blend: Tensor
) -> dict[ConditionalInstanceNorm, tuple[Tensor, Tensor]]:
    """Each normalization layer's (mean, variance) of its input, (1, C, 1, 1) each, on ``photo``."""
    found: dict[ConditionalInstanceNorm, tuple[Tensor, Tensor]] = {}

    def record(norm: ConditionalInstanceNorm, inputs: tuple[Tensor, ...]) -> None:
        x = inputs[0].float()
        found[norm] = (x.mean(dim=(2, 3), keepdim=True), x.var(dim=(2, 3), keepdim=True, unbiased=False))

    handles = [
        module.register_forward_pre_hook(record)
        for module in network.modules()
        if isinstance(module, ConditionalInstanceNorm)
    ]
    try:
        _whole(network, photo, blend)
    finally:
        for handle in handles:
            handle.remove()
    return found


@contextlib.contextmanager
def _frozen_statistics(statistics: Mapping[ConditionalInstanceNorm, tuple[Tensor, Tensor]]) -> Iterator[None]:
    """Every normalization layer uses its own entry of ``statistics`` instead of each input's."""
    for norm, found in statistics.items():
        norm.statistics = found
    try:
        yield
    finally:
        for norm in statistics:
            norm.statistics = None


# ---------------------------------------------------------------- files


@dataclass
class Applied:
    """What :func:`apply_to_files` wrote: one output per photo."""

    outputs: list[Path] = field(default_factory=list)
    seconds: float = 0.0


def output_paths(photos: Sequence[Path], *, out_dir: Path | None, output: Path | None) -> list[Path]:
    """Where each photo's result goes: ``output`` for one photo, else ``out_dir/<stem>.png``; clashes refused."""
    if output is not None:
        if len(photos) != 1:
            raise TexsynthError(f"output: one output file for {len(photos)} photos; give a folder (out) instead")
        targets = [Path(output)]
    elif out_dir is not None:
        targets = [Path(out_dir) / f"{Path(photo).stem}.png" for photo in photos]
    else:
        raise TexsynthError("output: give an output file for one photo, or a folder for several")
    seen: dict[Path, Path] = {}
    inputs = [(f"photo {photo}", Path(photo)) for photo in photos]
    for photo, target in zip(photos, targets):
        if target.suffix.lower() not in OUTPUT_SUFFIXES:
            raise TexsynthError(f"{target}: output: unsupported image type {target.suffix!r}; use .png, .jpg or .webp")
        if target in seen:
            raise TexsynthError(f"{photo}: its output {target} would overwrite that of {seen[target]}")
        clash = input_clash(target, inputs)
        if clash:
            raise TexsynthError(f"{target}: output: {clash}")
        seen[target] = Path(photo)
        problem = writable_problem(target)
        if problem:
            raise TexsynthError(f"{target}: output: {problem}")
    return targets


def apply_to_files(
    model_path: Path,
    photos: Sequence[Path],
    *,
    out_dir: Path | None = None,
    output: Path | None = None,
    blend: Mapping[str, float] | None = None,
    preserve_colour: PreserveColour = PreserveColour.NONE,
    tile: int | None = None,
    device: str | torch.device = "cpu",
    batch_size: int | None = None,
    on_photo: Callable[[Path], None] | None = None,
) -> Applied:
    """Stylize each photo with the model and write it with its provenance; every check comes before any work."""
    if tile is not None and tile < MIN_TILE:
        raise TexsynthError(f"tile: must be at least {MIN_TILE} px, got {tile}")
    if preserve_colour is PreserveColour.HISTOGRAM:
        raise TexsynthError("preserve_colour: a trained network applies luminance or none, not histogram")
    model = load_model(model_path)
    model.transformer()
    weights = blend_weights(model, blend)
    for photo in photos:
        problem = probe_image(Path(photo))
        if problem:
            raise TexsynthError(f"{photo}: {problem}" if str(photo) not in problem else problem)
    targets = output_paths(photos, out_dir=out_dir, output=output)
    named_blend = dict(zip(model.styles, weights))
    applied = Applied()
    began = time.perf_counter()
    for photo, target in zip(photos, targets):
        image, alpha = _read(Path(photo))
        result = stylize(model, image, blend=named_blend, device=device, tile=tile, batch_size=batch_size)
        if preserve_colour is PreserveColour.LUMINANCE:
            result = with_chroma_of(result, image)
        data = _provenance(model, named_blend, Path(photo), preserve_colour, tile, device)
        _write(result, alpha, target, data)
        applied.outputs.append(target)
        if on_photo is not None:
            on_photo(target)
    applied.seconds = time.perf_counter() - began
    return applied


def _read(path: Path) -> tuple[Tensor, Image.Image | None]:
    """The photo as RGB (1, 3, H, W) (transparency over white) and its alpha channel, if it has one."""
    image = load_image(path)
    alpha = None
    with Image.open(path) as opened:
        # The header tells whether there is an alpha channel; only then is the photo decoded a second time.
        if opened.mode in ("RGBA", "LA", "PA") or "transparency" in opened.info:
            alpha = ImageOps.exif_transpose(opened).convert("RGBA").getchannel("A")
    return image, alpha


def _write(result: Tensor, alpha: Image.Image | None, target: Path, data: dict[str, Any]) -> None:
    picture = to_pil(result)
    if alpha is not None and target.suffix.lower() in (".png", ".webp"):
        picture.putalpha(alpha)
    save_image(picture, target, data)


def _provenance(
    model: FastModel,
    blend: Mapping[str, float],
    photo: Path,
    preserve_colour: PreserveColour,
    tile: int | None,
    device: str | torch.device,
) -> dict[str, Any]:
    return {
        "texsynth": __version__,
        "torch": torch.__version__,
        "device": str(device),
        "made_by": "apply",
        "model": {"path": str(model.path), "sha256": model.sha256, "kind": model.kind, "recipe": model.recipe},
        "blend": dict(blend),
        "input": {"path": str(photo.resolve()), "sha256": sha256(photo)},
        "preserve_colour": preserve_colour.value,
        "tile": tile,
    }
