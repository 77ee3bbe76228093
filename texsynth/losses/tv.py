"""Total variation: the mean squared difference between neighbouring pixels.

A small weight removes the single-pixel noise that Gram losses leave behind
(Mahendran & Vedaldi, CVPR 2015, use the same regularizer).
"""

from __future__ import annotations

from torch import Tensor, nn

from ._checks import require_4d


def total_variation(image: Tensor, *, circular: bool = False) -> Tensor:
    """Mean squared horizontal plus vertical neighbour difference of (B, C, H, W) -> (B,).

    With ``circular``, the last row and column also count as neighbours of the
    first ones, so a tileable image is smoothed across its wrap-around seam too.
    """
    require_4d("image", image)
    if circular:
        vertical = (image - image.roll(1, dims=2)).pow(2).mean(dim=(1, 2, 3))
        horizontal = (image - image.roll(1, dims=3)).pow(2).mean(dim=(1, 2, 3))
    else:
        vertical = (image[:, :, 1:, :] - image[:, :, :-1, :]).pow(2).mean(dim=(1, 2, 3))
        horizontal = (image[:, :, :, 1:] - image[:, :, :, :-1]).pow(2).mean(dim=(1, 2, 3))
    return vertical + horizontal


class TotalVariationLoss(nn.Module):
    def __init__(self, *, circular: bool = False) -> None:
        super().__init__()
        self.circular = circular

    def forward(self, image: Tensor) -> Tensor:
        return total_variation(image, circular=self.circular)

    def extra_repr(self) -> str:
        return f"circular={self.circular}"
