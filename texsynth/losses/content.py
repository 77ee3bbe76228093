"""Content loss (Gatys, Ecker & Bethge, "Image Style Transfer Using Convolutional
Neural Networks", CVPR 2016): the features of a deep layer should match the
content image's. As with the Gram loss, the error is relative to the target's
energy, so the weight does not depend on the layer or the image size.
"""

from __future__ import annotations

from torch import Tensor, nn

from ._checks import relative_error, require_4d


def content_loss(features: Tensor, target: Tensor) -> Tensor:
    """‖F − T‖² / ‖T‖² for features (B, C, H, W) against one target (1, C, H, W) -> (B,)."""
    require_4d("features", features)
    require_4d("target", target)
    if target.shape[0] != 1 or features.shape[1:] != target.shape[1:]:
        raise ValueError(f"features {tuple(features.shape)} do not match target {tuple(target.shape)}")
    return relative_error(features - target, target, dims=(1, 2, 3))


class ContentLoss(nn.Module):
    """Content loss against fixed target features (1, C, H, W), kept in a buffer."""

    def __init__(self, target: Tensor) -> None:
        super().__init__()
        require_4d("target", target)
        self.register_buffer("target", target.detach().clone())

    def forward(self, features: Tensor) -> Tensor:
        return content_loss(features.float(), self.target)

    def extra_repr(self) -> str:
        return f"shape={tuple(self.target.shape[1:])}"
