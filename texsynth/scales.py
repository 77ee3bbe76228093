"""Coarse-to-fine synthesis: the sizes and step budgets of an image pyramid.

Large outputs optimized at full resolution from noise converge slowly and come
out blotchy: the deep layers' receptive fields cover a small part of the image,
so large structures are never organized. Synthesizing first at a small size
and upsampling the result as the start of the next, larger scale (as in
Gatys et al. 2017, "Controlling Perceptual Factors", and most later tools)
fixes both, and puts most of the steps where they are cheap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor
from torch.nn import functional as F

#: Outputs up to this long side are made at one scale when ``scales: auto``.
SINGLE_SCALE_UP_TO = 256
#: ``scales: auto`` makes the coarsest scale about this long.
COARSEST_LONG_SIDE = 128
#: A texture's coarsest scale under ``scales: auto`` up to 256 px: two scales at 128 px, three at 256.
TEXTURE_COARSEST_LONG_SIDE = 64


@dataclass(frozen=True)
class Scale:
    width: int
    height: int
    steps: int


def auto_scale_count(long_side: int, *, texture: bool = False) -> int:
    """How many scales ``scales: auto`` makes for an output of ``long_side`` px.

    Above 256 px: one more scale per doubling above ~128 px (512 -> 3, 1024 -> 4).
    Up to 256 px a style transfer has one scale, and a texture starts at ~64 px
    (128 -> 2, 256 -> 3): from noise, a full-size start spends its first hundred
    steps organizing what the coarse scales settle far more cheaply (README,
    Performance: the first command on a CPU). A transfer starts from its content
    image, which is organized already.
    """
    if long_side <= SINGLE_SCALE_UP_TO:
        return max(1, 1 + round(math.log2(long_side / TEXTURE_COARSEST_LONG_SIDE))) if texture else 1
    return 1 + round(math.log2(long_side / COARSEST_LONG_SIDE))


def plan_scales(
    width: int, height: int, steps: int, count: int, *, min_side: int, multiple: int = 1, even: bool = False
) -> list[Scale]:
    """Sizes from coarse to fine (each ×2, the last exactly width×height) and their steps.

    Scales that would be smaller than ``min_side`` are dropped. Steps are split
    in halves from the finest down (finest 1 share, next 2, then 4, ...), so most
    are spent where a step is cheap, with at least one step per scale; with
    ``even``, every scale gets the same share. Sides of coarse scales are
    rounded to ``multiple`` (tileable images need sides the pooling layers
    divide evenly).
    """
    sizes: list[tuple[int, int]] = []
    for level in range(count - 1, -1, -1):
        factor = 2**level
        w, h = _round_to(width / factor, multiple), _round_to(height / factor, multiple)
        if level == 0:
            w, h = width, height
        if min(w, h) >= min_side:
            sizes.append((w, h))
    shares = [1 if even else 2 ** (len(sizes) - 1 - i) for i in range(len(sizes))]
    counts = _split(steps, shares)
    return [Scale(w, h, n) for (w, h), n in zip(sizes, counts) if n > 0] or [Scale(width, height, steps)]


def _round_to(value: float, multiple: int) -> int:
    return max(multiple, int(round(value / multiple)) * multiple)


def _split(total: int, shares: list[int]) -> list[int]:
    """``total`` split in proportion to ``shares``; every part >= 1 when total allows; sums to total."""
    whole = sum(shares)
    counts = [max(1, math.floor(total * share / whole)) for share in shares]
    while sum(counts) > total and max(counts) > 1:
        counts[counts.index(max(counts))] -= 1
    # Leftover steps go to the finest scale, where detail is finished.
    counts[-1] += total - sum(counts)
    return counts


def upsample(image: Tensor, width: int, height: int, *, circular: bool = False) -> Tensor:
    """Bicubic resize of (B, 3, h, w) to (B, 3, height, width), clamped to [0, 1].

    With ``circular``, the image is wrapped before resizing so a tile's opposite
    edges stay continuous.
    """
    if image.shape[-2:] == (height, width):
        return image
    if not circular:
        return F.interpolate(image, size=(height, width), mode="bicubic", align_corners=False).clamp(0, 1)
    h, w = image.shape[-2:]
    pad = 2  # bicubic reads two pixels on each side
    wrapped = F.pad(image, (pad, pad, pad, pad), mode="circular")
    scale_y, scale_x = height / h, width / w
    big = F.interpolate(
        wrapped,
        size=(round((h + 2 * pad) * scale_y), round((w + 2 * pad) * scale_x)),
        mode="bicubic",
        align_corners=False,
    )
    top, left = round(pad * scale_y), round(pad * scale_x)
    return big[..., top : top + height, left : left + width].clamp(0, 1).contiguous()
