"""Total variation: the mean squared difference between neighbouring pixels.

A small weight removes the single-pixel noise that Gram losses leave behind
(Mahendran & Vedaldi, CVPR 2015, use the same regularizer).
"""

from __future__ import annotations

from torch import Tensor, nn

from ._checks import require_4d


def total_variation(image: Tensor) -> Tensor:
    """Mean squared horizontal plus vertical neighbour difference of (B, C, H, W) -> (B,)."""
    require_4d("image", image)
    vertical = (image[:, :, 1:, :] - image[:, :, :-1, :]).pow(2).mean(dim=(1, 2, 3))
    horizontal = (image[:, :, :, 1:] - image[:, :, :, :-1]).pow(2).mean(dim=(1, 2, 3))
    return vertical + horizontal


class TotalVariationLoss(nn.Module):
    def forward(self, image: Tensor) -> Tensor:
        return total_variation(image)
