"""Colour preservation for style transfer (Gatys, Bethge, Hertzmann & Shechtman,
"Controlling Perceptual Factors in Neural Style Transfer", CVPR 2017, §5).

A plain transfer paints the content in the style's palette. Two ways keep the
content's colours, chosen by :class:`~texsynth.recipe.PreserveColour`:

- ``luminance``: transfer on luminance only. Style and content become grey
  (YIQ's Y), the style's luminance is matched to the content's mean and
  deviation, the optimizer works on grey images, and the result's luminance is
  recombined with the content's chroma (I and Q). Colours are exactly the
  content's; the style contributes strokes and texture.
- ``histogram``: colour matching before extraction. Each style image gets the
  content's colour mean and covariance through the affine map
  ``x' = Σc^½ Σs^-½ (x − μs) + μc`` (the symmetric square root, which the paper
  found to give the most faithful colours), then the transfer runs as usual.

A control is a small object bound to the content image: ``style`` prepares a
style image, ``working`` turns any other starting image into the space the
optimizer works in, and ``finish`` turns an optimized image back into output
colours (also applied to previews, so they show what the output will).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .recipe import PreserveColour

# RGB -> YIQ (NTSC 1953, as in the paper).
_RGB_TO_YIQ = torch.tensor(
    [
        [0.299, 0.587, 0.114],
        [0.595716, -0.274453, -0.321263],
        [0.211456, -0.522591, 0.311135],
    ],
    dtype=torch.float64,
)
_YIQ_TO_RGB = torch.linalg.inv(_RGB_TO_YIQ)
#: Added to colour covariances before the inverse square root: a near-grey style
#: image has almost no variance in some colour direction, and dividing by it
#: would blow its JPEG noise up into vivid colour.
COVARIANCE_EPSILON = 1e-3


def _mix(matrix: Tensor, image: Tensor) -> Tensor:
    return torch.einsum("ij,bjhw->bihw", matrix.to(image), image)  # (B, 3, H, W)


def rgb_to_yiq(image: Tensor) -> Tensor:
    """(B, 3, H, W) RGB -> YIQ; Y is the luminance in [0, 1]."""
    return _mix(_RGB_TO_YIQ, image)


def yiq_to_rgb(image: Tensor) -> Tensor:
    """(B, 3, H, W) YIQ -> RGB (not clamped)."""
    return _mix(_YIQ_TO_RGB, image)


def grey(image: Tensor) -> Tensor:
    """The luminance of (B, 3, H, W) repeated in all three channels."""
    return rgb_to_yiq(image)[:, :1].expand_as(image).contiguous()


def match_luminance(style: Tensor, content: Tensor) -> Tensor:
    """``style`` as grey whose luminance has the content's mean and standard deviation."""
    style_y, content_y = rgb_to_yiq(style)[:, :1], rgb_to_yiq(content)[:, :1]
    scale = content_y.std() / style_y.std().clamp_min(1e-6)
    matched = (style_y - style_y.mean()) * scale + content_y.mean()
    return matched.clamp(0, 1).expand_as(style).contiguous()


def with_chroma_of(image: Tensor, content: Tensor) -> Tensor:
    """The luminance of ``image`` (B, 3, H, W) with the chroma (I, Q) of ``content`` (1, 3, H, W)."""
    luminance = rgb_to_yiq(image)[:, :1]
    chroma = rgb_to_yiq(content)[:, 1:].expand(image.shape[0], -1, -1, -1)
    return yiq_to_rgb(torch.cat([luminance, chroma], dim=1)).clamp(0, 1)


def colour_statistics(image: Tensor) -> tuple[Tensor, Tensor]:
    """Mean colour (3,) and colour covariance (3, 3) of (1, 3, H, W), in float64."""
    pixels = image.detach().double().reshape(3, -1)  # (3, H*W)
    mean = pixels.mean(dim=1)
    centred = pixels - mean[:, None]
    return mean, centred @ centred.T / pixels.shape[1]


def _matrix_power(covariance: Tensor, power: float) -> Tensor:
    """Symmetric power of a covariance matrix, regularized by COVARIANCE_EPSILON."""
    values, vectors = torch.linalg.eigh(covariance + COVARIANCE_EPSILON * torch.eye(3, dtype=covariance.dtype))
    return vectors @ torch.diag(values.clamp_min(0).pow(power)) @ vectors.T


def match_colour(style: Tensor, content: Tensor) -> Tensor:
    """``style`` (1, 3, H, W) affinely recoloured to the content's colour mean and covariance."""
    style_mean, style_cov = colour_statistics(style)
    content_mean, content_cov = colour_statistics(content)
    transform = _matrix_power(content_cov, 0.5) @ _matrix_power(style_cov, -0.5)  # (3, 3)
    pixels = style.double().reshape(3, -1)
    matched = transform @ (pixels - style_mean[:, None]) + content_mean[:, None]
    return matched.reshape(style.shape).clamp(0, 1).to(style.dtype)


class ColourControl:
    """How a run treats colour, bound to the content image (None for a texture).

    ``style`` prepares a style image, ``working`` turns any other starting image
    into the optimizer's colour space and ``finish`` turns an optimized image
    back into output colours. The base class changes nothing.
    """

    def __init__(self, content: Tensor | None) -> None:
        self.content = content
        self._on_device: dict[torch.device, Tensor] = {}

    def style(self, image: Tensor) -> Tensor:
        return image

    def working(self, image: Tensor) -> Tensor:
        return image

    def finish(self, image: Tensor) -> Tensor:
        return image

    def content_on(self, device: torch.device) -> Tensor:
        # finish() runs on every preview: keep one copy of the content per device.
        if device not in self._on_device:
            self._on_device[device] = self.required_content().to(device)
        return self._on_device[device]

    def required_content(self) -> Tensor:
        if self.content is None:
            raise ValueError(f"{type(self).__name__} needs a content image")
        return self.content


class KeepStyleColours(ColourControl):
    """``preserve_colour: none``: the plain transfer, in the style's palette."""


class MatchHistogram(ColourControl):
    """``preserve_colour: histogram``: style images recoloured to the content's colour statistics."""

    def style(self, image: Tensor) -> Tensor:
        return match_colour(image, self.required_content())


class LuminanceOnly(ColourControl):
    """``preserve_colour: luminance``: transfer on luminance, then put the content's chroma back."""

    def style(self, image: Tensor) -> Tensor:
        return match_luminance(image, self.required_content())

    def working(self, image: Tensor) -> Tensor:
        return grey(image)

    def finish(self, image: Tensor) -> Tensor:
        return with_chroma_of(image, self.content_on(image.device))


COLOUR_CONTROLS: dict[PreserveColour, type[ColourControl]] = {
    PreserveColour.NONE: KeepStyleColours,
    PreserveColour.HISTOGRAM: MatchHistogram,
    PreserveColour.LUMINANCE: LuminanceOnly,
}
