"""Content loss (Gatys, Ecker & Bethge, "Image Style Transfer Using Convolutional
Neural Networks", CVPR 2016): the features of a deep layer should match the
content image's. As with the Gram loss, the error is relative to the target's
energy, so the weight does not depend on the layer or the image size.

A network trained on many photos (Johnson et al. 2016) compares each batch
item with its own photo: the target may hold one item per batch item, each
normalized by its own energy, so a dark photo counts as much as a bright one.
"""

from __future__ import annotations

from torch import Tensor, nn

from ._checks import relative_error, require_4d


def content_loss(features: Tensor, target: Tensor) -> Tensor:
    """‖F − T‖² / ‖T‖² per item -> (B,).

    ``features`` (B, C, H, W) against one target (1, C, H, W) shared by every
    item, or one target per item (B, C, H, W), each item normalized by its own.
    """
    require_4d("features", features)
    require_4d("target", target)
    if target.shape[0] not in (1, features.shape[0]) or features.shape[1:] != target.shape[1:]:
        raise ValueError(
            f"features {tuple(features.shape)} do not match target {tuple(target.shape)}: "
            "give one target (1, C, H, W) or one per item (B, C, H, W)"
        )
    return relative_error(features - target, target, dims=(1, 2, 3))


class ContentLoss(nn.Module):
    """Content loss against fixed target features (1, C, H, W) or one per batch item (B, C, H, W), in a buffer.

    ``set_target`` replaces the target (the same channels; any batch and size), so
    a training loop can compare each batch of photos with its own features.
    """

    target: Tensor

    def __init__(self, target: Tensor) -> None:
        super().__init__()
        require_4d("target", target)
        self.register_buffer("target", target.detach().clone())

    def set_target(self, target: Tensor) -> None:
        require_4d("target", target)
        if target.shape[1] != self.target.shape[1]:
            raise ValueError(f"target {tuple(target.shape)} does not match the channels of {tuple(self.target.shape)}")
        self.target = target.detach()

    def forward(self, features: Tensor) -> Tensor:
        return content_loss(features.float(), self.target)

    def extra_repr(self) -> str:
        return f"shape={tuple(self.target.shape[1:])}"
