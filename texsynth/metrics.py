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
from .losses import content_loss, gram_loss, gram_matrix
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
    def content_distance(self, image: Tensor, content: Tensor) -> float:
        """Relative feature error of ``image`` against ``content`` at the content layer (same size)."""
        target = self.extractor(content)[self.content_layer]
        return float(content_loss(self.extractor(image)[self.content_layer], target)[0])
