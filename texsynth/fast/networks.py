"""The feed-forward networks: a texture generator from noise, and an image transformation network.

Both normalize with *conditional instance normalization* (Dumoulin, Shlens &
Kudlur, "A Learned Representation for Artistic Style", ICLR 2017): instance
normalization (Ulyanov, Vedaldi & Lempitsky 2016/2017) followed by a scale
and shift chosen per style, with every convolution shared. A blend of styles
uses the weighted mean of the styles' scales and shifts, so one network makes
every blend of the styles it was trained on.

The texture generator follows Texture Networks (Ulyanov, Lebedev, Vedaldi &
Lempitsky, ICML 2016): noise enters at every scale, from 1/2^(S-1) of the
output up to full size; each scale is two 3×3 convolutions with normalization
and a leaky ReLU, upsampled ×2 (nearest) and joined with the next scale's
noise. Channels halve as the resolution doubles, so most of the work is at
the coarse scales: 128, 64, 32, 16 and 8 channels take about 40 ms a 256 px
sample on two CPU cores with the circular padding every generator uses (35 ms
with zero padding, measured turn about; 2026-12-01), where Texture Networks' 8 channels per scale joined by
concatenation would spend most of it at full size. With ``circular`` padding
(what training uses, see ``train.py``) every convolution sees a torus, so
every sample of any size tiles.

The transformation network follows Johnson, Alahi & Fei-Fei ("Perceptual
Losses for Real-Time Style Transfer", ECCV 2016) with instance normalization
(Ulyanov et al. 2016): a wide first convolution, two strided convolutions
down, residual blocks, then two upsamplings by resize (nearest) and
convolution, which leaves none of a transposed convolution's checkerboard,
and a wide last convolution; reflection padding throughout. Departing from
Johnson et al., the last convolution's output starts at zero and is added to
the photo *recoloured*: each colour channel instance-normalized, then given
one learned scale and shift per style (a conditional instance norm on the
RGB channels, starting at mean 0.5 and spread 0.25). So the untrained
network is the photo with its colour cast and contrast taken out, near where
the optimization path starts (its content image), and the network learns
the change from there. Adding the change to the photo itself (``skip:
photo``, format 1's networks) keeps each photo's own colours: every
normalization inside removes the photo's mean colour and contrast before
the network can see them, so it cannot undo them photo by photo. Trained by
the same command on the same draws (1000 iterations on the CPU, 2026-12-01),
the recoloured skip ends at a training loss of 0.32 against the photo skip's
0.53. Its channels are half of Johnson's (16, 32, 64), a quarter of the
arithmetic, so a 512 px photo takes under half a second on two CPU cores.

An architecture is a small dict of plain values (:meth:`TextureGenerator.architecture`),
checked before anything is built from it: a model file can describe its
network, never run code or ask for absurd sizes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal, cast

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..errors import TexsynthError

#: Added to the variance before normalizing, as torch's instance norm does.
EPSILON = 1e-5
Padding = Literal["circular", "zeros", "reflect"]
#: How convolutions see beyond the edge: circular makes every output tile.
PADDINGS: tuple[Padding, ...] = ("circular", "zeros", "reflect")
Skip = Literal["recoloured", "photo"]
#: What a transfer network adds its change to: the photo recoloured per style, or the photo as it is.
SKIPS: tuple[Skip, ...] = ("recoloured", "photo")
#: The recoloured skip's start: every channel of the photo at this mean and spread.
RECOLOUR_SHIFT, RECOLOUR_SCALE = 0.5, 0.25


class ConditionalInstanceNorm(nn.Module):
    """Instance normalization with one scale and shift per style; a blend mixes them by weight.

    ``forward(x, blend)``: ``x`` (B, C, H, W), ``blend`` (B, K) weights per item
    (rows summing to 1) -> (B, C, H, W).
    """

    def __init__(self, channels: int, styles: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(styles, channels))
        self.shift = nn.Parameter(torch.zeros(styles, channels))
        #: (mean, variance), each (1, C, 1, 1), to normalize with instead of each input's own: a
        #: photo stylized in tiles normalizes every tile by the whole photo's statistics.
        self.statistics: tuple[Tensor, Tensor] | None = None

    def forward(self, x: Tensor, blend: Tensor) -> Tensor:
        scale = (blend @ self.scale)[:, :, None, None]  # (B, C, 1, 1)
        shift = (blend @ self.shift)[:, :, None, None]
        if self.statistics is None:
            normalized = F.instance_norm(x, eps=EPSILON)
        else:
            mean, variance = self.statistics
            normalized = (x - mean.to(x.dtype)) * torch.rsqrt(variance.to(x.dtype) + EPSILON)
        return normalized * scale + shift

    def extra_repr(self) -> str:
        return f"channels={self.scale.shape[1]}, styles={self.scale.shape[0]}"


class ConvNormAct(nn.Module):
    """3×3 (or ``kernel``) convolution, conditional instance norm, then leaky ReLU (or ReLU, or nothing).

    ``stride`` 2 halves the size.
    """

    def __init__(
        self,
        inputs: int,
        outputs: int,
        styles: int,
        padding: Padding,
        *,
        kernel: int = 3,
        stride: int = 1,
        act: bool = True,
        relu: bool = False,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(inputs, outputs, kernel, stride=stride, padding=kernel // 2, padding_mode=padding)
        self.norm = ConditionalInstanceNorm(outputs, styles)
        self.act, self.relu = act, relu

    def forward(self, x: Tensor, blend: Tensor) -> Tensor:
        x = self.norm(self.conv(x), blend)
        if not self.act:
            return x
        return F.relu(x) if self.relu else F.leaky_relu(x, 0.2)


class GeneratorScale(nn.Module):
    """One scale of the generator: two 3×3 convolutions, each normalized per style and leaky-ReLU'd."""

    def __init__(self, inputs: int, width: int, styles: int, padding: Padding) -> None:
        super().__init__()
        self.first = ConvNormAct(inputs, width, styles, padding)
        self.second = ConvNormAct(width, width, styles, padding)

    def forward(self, x: Tensor, blend: Tensor) -> Tensor:
        return self.second(self.first(x, blend), blend)


class TextureGenerator(nn.Module):
    """Noise at every scale -> an RGB texture (B, 3, H, W) in [0, 1], for any H, W divisible by :attr:`stride`.

    ``forward(noise, blend)``: ``noise`` holds one tensor per scale, coarsest
    first, (B, noise_channels, H/2^(S-1-i), W/2^(S-1-i)) (see :func:`noise_shapes`);
    ``blend`` (B, K) the style weights of each item.
    """

    kind = "texture_generator"

    def __init__(
        self,
        *,
        styles: int,
        widths: Sequence[int] = (128, 64, 32, 16, 8),
        noise_channels: int = 8,
        padding: Padding = "zeros",
    ) -> None:
        super().__init__()
        self.styles, self.widths = int(styles), tuple(int(w) for w in widths)
        self.noise_channels, self.padding = int(noise_channels), padding
        inputs = [noise_channels + previous for previous in (0, *self.widths[:-1])]
        self.scales = nn.ModuleList(
            GeneratorScale(count, width, styles, padding) for count, width in zip(inputs, self.widths)
        )
        self.to_rgb = nn.Conv2d(self.widths[-1], 3, kernel_size=1)

    @property
    def stride(self) -> int:
        """Output sides must divide by this: the coarsest noise is 1/stride of the output."""
        return 2 ** (len(self.widths) - 1)

    def noise_shapes(self, width: int, height: int) -> list[tuple[int, int, int]]:
        """(channels, height, width) of each scale's noise for an output of width×height, coarsest first."""
        return [(self.noise_channels, height >> level, width >> level) for level in range(len(self.widths) - 1, -1, -1)]

    def forward(self, noise: Sequence[Tensor], blend: Tensor) -> Tensor:
        x: Tensor | None = None
        for scale, z in zip(self.scales, noise):
            x = z if x is None else torch.cat([F.interpolate(x, scale_factor=2.0, mode="nearest"), z], dim=1)
            x = scale(x, blend)
        assert x is not None
        return torch.sigmoid(self.to_rgb(x))

    def architecture(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "styles": self.styles,
            "widths": list(self.widths),
            "noise_channels": self.noise_channels,
            "padding": self.padding,
        }


class ResidualBlock(nn.Module):
    """x + (conv, norm, ReLU, conv, norm)(x), at constant size and width."""

    def __init__(self, width: int, styles: int, padding: Padding) -> None:
        super().__init__()
        self.first = ConvNormAct(width, width, styles, padding, relu=True)
        self.second = ConvNormAct(width, width, styles, padding, act=False)

    def forward(self, x: Tensor, blend: Tensor) -> Tensor:
        return x + self.second(self.first(x, blend), blend)


class TransferNetwork(nn.Module):
    """A photo (B, 3, H, W) in [0, 1] -> its stylized image, same size, for H, W divisible by :attr:`stride`.

    ``forward(photo, blend)``: ``blend`` (B, K) the style weights of each item.
    Other sizes go through :func:`texsynth.fast.apply.stylize`, which pads and crops back.
    ``skip``: what the network's change is added to, the photo recoloured per style (the default) or
    the photo itself (format-1 model files); see the module docstring.
    """

    kind = "transfer_network"

    def __init__(
        self,
        *,
        styles: int,
        widths: Sequence[int] = (16, 32, 64),
        blocks: int = 5,
        edge_kernel: int = 9,
        padding: Padding = "reflect",
        skip: Skip = "recoloured",
    ) -> None:
        super().__init__()
        if len(widths) != 3:
            raise ValueError(f"widths must be three channel counts, got {widths}")
        self.styles, self.widths, self.blocks = int(styles), tuple(int(w) for w in widths), int(blocks)
        self.edge_kernel, self.padding, self.skip = int(edge_kernel), padding, skip
        first, second, third = self.widths
        self.down = nn.ModuleList(
            [
                ConvNormAct(3, first, styles, padding, kernel=edge_kernel, relu=True),
                ConvNormAct(first, second, styles, padding, stride=2, relu=True),
                ConvNormAct(second, third, styles, padding, stride=2, relu=True),
            ]
        )
        self.residual = nn.ModuleList(ResidualBlock(third, styles, padding) for _ in range(blocks))
        self.up = nn.ModuleList(
            [
                ConvNormAct(third, second, styles, padding, relu=True),
                ConvNormAct(second, first, styles, padding, relu=True),
            ]
        )
        self.to_rgb = nn.Conv2d(first, 3, edge_kernel, padding=edge_kernel // 2, padding_mode=padding)
        # The change starts at zero: the untrained network is its skip alone, near where the optimization path starts.
        nn.init.zeros_(self.to_rgb.weight)
        assert self.to_rgb.bias is not None
        nn.init.zeros_(self.to_rgb.bias)
        self.recolour: ConditionalInstanceNorm | None = None
        if skip == "recoloured":
            self.recolour = ConditionalInstanceNorm(3, styles)
            nn.init.constant_(self.recolour.scale, RECOLOUR_SCALE)
            nn.init.constant_(self.recolour.shift, RECOLOUR_SHIFT)

    @property
    def stride(self) -> int:
        return 4

    def forward(self, photo: Tensor, blend: Tensor) -> Tensor:
        x = photo
        for layer in self.down:
            x = layer(x, blend)
        for block in self.residual:
            x = block(x, blend)
        for layer in self.up:
            x = layer(F.interpolate(x, scale_factor=2.0, mode="nearest"), blend)
        # A change to the photo, shown clamped to [0, 1]; the gradient passes the clamp (straight through), so a
        # pixel pushed past black or white can come back, where a sigmoid would saturate and stop learning.
        base = photo.float() if self.recolour is None else self.recolour(photo.float(), blend)
        changed = base + self.to_rgb(x)
        return changed + (changed.clamp(0, 1) - changed).detach()

    def architecture(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "styles": self.styles,
            "widths": list(self.widths),
            "blocks": self.blocks,
            "edge_kernel": self.edge_kernel,
            "padding": self.padding,
            "skip": self.skip,
        }


def _whole(value: Any, low: int, high: int, name: str) -> int:
    if type(value) is not int or not low <= value <= high:
        raise TexsynthError(f"architecture: {name} must be a whole number from {low} to {high}, got {value!r}")
    return value


def texture_generator_from(architecture: Mapping[str, Any]) -> TextureGenerator:
    """A generator as ``architecture`` describes it, after checking every value (it comes from a file)."""
    known = {"kind", "styles", "widths", "noise_channels", "padding"}
    if set(architecture) != known:
        raise TexsynthError(f"architecture: expected the fields {sorted(known)}, got {sorted(map(str, architecture))}")
    widths = architecture["widths"]
    if not isinstance(widths, list) or not 1 <= len(widths) <= 8:
        raise TexsynthError(f"architecture: widths must be a list of 1 to 8 channel counts, got {widths!r}")
    if architecture["padding"] not in PADDINGS:
        raise TexsynthError(f"architecture: padding must be one of {PADDINGS}, got {architecture['padding']!r}")
    return TextureGenerator(
        styles=_whole(architecture["styles"], 1, 64, "styles"),
        widths=[_whole(width, 1, 1024, "widths") for width in widths],
        noise_channels=_whole(architecture["noise_channels"], 1, 64, "noise_channels"),
        padding=cast(Padding, architecture["padding"]),
    )


def transfer_network_from(architecture: Mapping[str, Any]) -> TransferNetwork:
    """A transformation network as ``architecture`` describes it, after checking every value."""
    known = {"kind", "styles", "widths", "blocks", "edge_kernel", "padding", "skip"}
    # Files of format 1 predate the recoloured skip: theirs add the change to the photo itself.
    architecture = {"skip": "photo", **architecture}
    if set(architecture) != known:
        raise TexsynthError(f"architecture: expected the fields {sorted(known)}, got {sorted(map(str, architecture))}")
    if architecture["skip"] not in SKIPS:
        raise TexsynthError(f"architecture: skip must be one of {SKIPS}, got {architecture['skip']!r}")
    widths = architecture["widths"]
    if not isinstance(widths, list) or len(widths) != 3:
        raise TexsynthError(f"architecture: widths must be a list of 3 channel counts, got {widths!r}")
    if architecture["padding"] not in PADDINGS:
        raise TexsynthError(f"architecture: padding must be one of {PADDINGS}, got {architecture['padding']!r}")
    kernel = _whole(architecture["edge_kernel"], 1, 15, "edge_kernel")
    if kernel % 2 == 0:
        raise TexsynthError(f"architecture: edge_kernel must be odd, got {kernel}")
    return TransferNetwork(
        styles=_whole(architecture["styles"], 1, 64, "styles"),
        widths=[_whole(width, 1, 1024, "widths") for width in widths],
        blocks=_whole(architecture["blocks"], 0, 32, "blocks"),
        edge_kernel=kernel,
        padding=cast(Padding, architecture["padding"]),
        skip=cast(Skip, architecture["skip"]),
    )
