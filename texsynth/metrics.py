"""Measurements of a result, for tests, benchmarks and reports: how close is it to a style or a content?

They reuse the training losses on a fixed layer set, so "distance" means the
same relative Gram (or feature) error that the optimizer sees.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from .features import VGGFeatures
from .graph import normalized, style_targets
from .losses import content_loss, gram_loss, gram_matrix, random_projections, sliced_wasserstein_loss
from .recipe import DEFAULT_STYLE_LAYERS

MEASURE_LAYERS: tuple[str, ...] = tuple(DEFAULT_STYLE_LAYERS)


class Measure:
    """A frozen VGG19 set up to compare images with styles and contents."""

    def __init__(self, layers: Sequence[str] = MEASURE_LAYERS, *, content_layer: str = "relu4_2") -> None:
        self.layers = tuple(layers)
        self.content_layer = content_layer
        self.extractor = VGGFeatures([*self.layers, content_layer])

    def grams(self, images: Sequence[Tensor], weights: Sequence[float] | None = None) -> dict[str, Tensor]:
        """Target Grams of one style or a weighted blend of several."""
        weights = weights if weights is not None else [1.0] * len(images)
        return style_targets(self.extractor, list(images), weights, self.layers)

    @torch.no_grad()
    def style_distance(self, image: Tensor, grams: Mapping[str, Tensor]) -> float:
        """Mean relative Gram error of ``image`` (1, 3, H, W) over the measure layers."""
        features = self.extractor(image)
        shares = normalized([1.0] * len(self.layers))
        return sum(
            share * float(gram_loss(gram_matrix(features[layer]), grams[layer])[0])
            for share, layer in zip(shares, self.layers)
        )

    @torch.no_grad()
    def sliced_distance(
        self, image: Tensor, styles: Sequence[Tensor], weights: Sequence[float] | None = None, *, draws: int = 4
    ) -> float:
        """Mean relative sliced-Wasserstein distance to the styles' feature distribution.

        Its projections come from a fixed generator of their own (seed 2021), not
        from any run's, so it judges a Gram-trained and an SW-trained image alike.
        """
        generator = torch.Generator().manual_seed(2021)
        features = self.extractor(image)
        style_features = [self.extractor(style) for style in styles]
        total = 0.0
        for layer in self.layers:
            channels = features[layer].shape[1]
            targets = [f[layer][0].flatten(1) for f in style_features]
            for _ in range(draws):
                projections = random_projections(channels, channels, generator=generator)
                total += float(sliced_wasserstein_loss(features[layer], targets, projections, weights)[0])
        return total / (len(self.layers) * draws)

    def perceptual_seam(self, image: Tensor, grams: Mapping[str, Tensor]) -> float:
        """Style distance of the tile rolled by half ÷ that of the tile itself.

        Rolling brings the wrap-around edges into the middle; a seam there is
        structure the style does not have, so it raises the distance (1.0 = none).
        """
        return self.style_distance(roll_half(image), grams) / max(self.style_distance(image, grams), 1e-12)

    def worst_window(self, image: Tensor, grams: Mapping[str, Tensor], *, windows: int = 3) -> float:
        """The largest style distance of ``windows`` × ``windows`` overlapping half-size windows of ``image``.

        A blotch or a smudge in one place barely moves the whole image's Grams;
        the window it sits in shows it. Windows are half the image's sides,
        ``windows`` per side, evenly spaced from edge to edge.
        """
        height, width = image.shape[-2:]
        window_height, window_width = height // 2, width // 2
        tops = [round(i * (height - window_height) / max(windows - 1, 1)) for i in range(windows)]
        lefts = [round(i * (width - window_width) / max(windows - 1, 1)) for i in range(windows)]
        return max(
            self.style_distance(image[..., top : top + window_height, left : left + window_width], grams)
            for top in tops
            for left in lefts
        )

    @torch.no_grad()
    def feature_distance(self, first: Tensor, second: Tensor) -> float:
        """How different two images (1, 3, H, W) of one size are, position by position, over the measure layers.

        ‖F₁ − F₂‖² / (‖F₁‖² + ‖F₂‖²) per layer, averaged: 0 for the same image,
        about 1 for two unrelated ones. Two textures of one style have similar
        statistics, so it is their layout that this sees.
        """
        features = [self.extractor(image) for image in (first, second)]
        total = 0.0
        for layer in self.layers:
            one, two = features[0][layer], features[1][layer]
            total += float((one - two).pow(2).sum() / (one.pow(2).sum() + two.pow(2).sum()).clamp_min(1e-12))
        return total / len(self.layers)

    def diversity(self, images: Sequence[Tensor]) -> float:
        """Mean :meth:`feature_distance` over every pair of ``images``: 0 when all are the same."""
        pairs = [(i, j) for i in range(len(images)) for j in range(i + 1, len(images))]
        if not pairs:
            raise ValueError("diversity needs at least two images")
        return sum(self.feature_distance(images[i], images[j]) for i, j in pairs) / len(pairs)

    @torch.no_grad()
    def content_distance(self, image: Tensor, content: Tensor) -> float:
        """Relative feature error of ``image`` against ``content`` at the content layer (same size)."""
        target = self.extractor(content)[self.content_layer]
        return float(content_loss(self.extractor(image)[self.content_layer], target)[0])


def pixel_seam(image: Tensor) -> float:
    """Mean absolute pixel step across the wrap-around edges ÷ the mean step between neighbours inside.

    1.0 means the edges continue each other as well as any two neighbouring
    pixels do (no seam). On fine, noisy textures this barely moves even when a
    seam is plain to see: use :meth:`Measure.perceptual_seam` too.
    """
    across = torch.cat(
        [(image[..., :, 0] - image[..., :, -1]).abs().flatten(), (image[..., 0, :] - image[..., -1, :]).abs().flatten()]
    )
    inside = torch.cat(
        [
            (image[..., :, 1:] - image[..., :, :-1]).abs().flatten(),
            (image[..., 1:, :] - image[..., :-1, :]).abs().flatten(),
        ]
    )
    return float(across.mean() / inside.mean().clamp_min(1e-12))


def roll_half(image: Tensor) -> Tensor:
    """Shift by half the height and width: the wrap-around edges meet in the middle."""
    return image.roll((image.shape[-2] // 2, image.shape[-1] // 2), dims=(-2, -1))
