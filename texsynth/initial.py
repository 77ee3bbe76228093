"""Starting images: where the optimizer begins, chosen by the recipe's ``init``.

Gatys et al. start texture synthesis from white noise and note (2016, §3.3 and
Fig. 6) that a transfer started from the content or the style image converges
to a different, equally valid result; the starting image is a control in its
own right. Four strategies, picked by :class:`~texsynth.recipe.Init`:

- ``noise``: faint noise around mid-grey, from the seed;
- ``content``: the content image;
- ``image``: a given image (``init_image``), resized to the output;
- ``style_mean``: the same faint noise around the style images' mean colour
  (weighted like the blend), so the palette is right from the first step.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .errors import TexsynthError
from .recipe import Init

#: Half-width of the uniform noise that the noise and style_mean starts add.
NOISE_AMPLITUDE = 0.1


@dataclass(frozen=True)
class StartInputs:
    """What a strategy may start from; images are (1, 3, H, W) at the output size, in [0, 1]."""

    shape: tuple[int, ...]  # (B, 3, H, W)
    seed: int
    content: Tensor | None = None
    image: Tensor | None = None
    style_mean: Tensor | None = None  # (3,)


def noise(shape: tuple[int, ...], seed: int, centre: Tensor | float = 0.5) -> Tensor:
    """Uniform noise of ±NOISE_AMPLITUDE around ``centre`` (a grey level or an RGB colour (3,))."""
    # Faint noise breaks the symmetry without leaving full-range speckle in the
    # result; BatchedLBFGS's fixed-size first step moves it off the near-zero-Gram
    # plateau at once. Drawn on the CPU from its own generator so a seed gives the
    # same start on every device and in any batch.
    generator = torch.Generator().manual_seed(seed)
    if isinstance(centre, Tensor):
        centre = centre.reshape(1, 3, 1, 1).cpu()
    return (centre + NOISE_AMPLITUDE * (2 * torch.rand(shape, generator=generator) - 1)).clamp(0, 1)


def mean_colour(images: Sequence[Tensor], weights: Sequence[float]) -> Tensor:
    """The weighted mean RGB colour (3,) of images (1, 3, H, W)."""
    total = float(sum(weights))
    return sum(w / total * image.mean(dim=(0, 2, 3)) for image, w in zip(images, weights))  # type: ignore[return-value]


def _given(name: str, image: Tensor | None, shape: tuple[int, ...]) -> Tensor:
    if image is None:
        raise TexsynthError(f"init: {name!r} needs an image to start from")
    return image.expand(shape).clone()


INITIALIZERS: dict[Init, Callable[[StartInputs], Tensor]] = {
    Init.NOISE: lambda start: noise(start.shape, start.seed),
    Init.CONTENT: lambda start: _given("content", start.content, start.shape),
    Init.IMAGE: lambda start: _given("image", start.image, start.shape),
    Init.STYLE_MEAN: lambda start: noise(
        start.shape, start.seed, start.style_mean if start.style_mean is not None else 0.5
    ),
}


def starting_image(init: Init, start: StartInputs) -> Tensor:
    """The image (B, 3, H, W) the optimizer starts from, on the CPU."""
    return INITIALIZERS[init](start)
