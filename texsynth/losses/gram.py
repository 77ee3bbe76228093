"""Gram-matrix style loss (Gatys, Ecker & Bethge, "Texture Synthesis Using
Convolutional Neural Networks", NeurIPS 2015).

A layer's Gram matrix G = F·Fᵀ / (H·W) holds the channel correlations averaged
over positions, so it describes a texture independently of where things are
and of the image size. Departing from the paper's 1/(4·N²·M²) factor, the loss
is the relative error ‖G − T‖² / ‖T‖²: every layer starts near 1 whatever its
activation scale, so layer weights near 1 mean "equal say".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ._checks import blend_shares, relative_error, require_4d


def _square(target: Tensor) -> Tensor:
    if target.dim() == 3 and target.shape[0] == 1:
        target = target[0]
    if target.dim() != 2 or target.shape[0] != target.shape[1]:
        raise ValueError(f"target must be a (C, C) Gram matrix, got {tuple(target.shape)}")
    return target


class _SelfProducts(torch.autograd.Function):
    """F·Fᵀ for F (B, C, N), differentiated in one product: dF = (dG + dGᵀ)·F.

    Autograd's rule for a generic product differentiates each factor on its
    own, two (C, C)·(C, N) products that both give the same half of the
    answer; on two CPU cores that was 30 ms of a 256 px step.
    """

    @staticmethod
    def forward(ctx, flat: Tensor) -> Tensor:
        ctx.save_for_backward(flat)
        return torch.bmm(flat, flat.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (flat,) = ctx.saved_tensors
        return torch.bmm(grad + grad.transpose(1, 2), flat)


def _self_products(flat: Tensor) -> Tensor:
    return _SelfProducts.apply(flat)


def gram_matrix(features: Tensor) -> Tensor:
    """Channel correlations of ``features`` (B, C, H, W) -> (B, C, C), divided by H·W."""
    require_4d("features", features)
    batch, channels, height, width = features.shape
    flat = features.reshape(batch, channels, height * width)  # (B, C, H*W)
    return _self_products(flat) / (height * width)  # (B, C, C)


def gram_loss(gram: Tensor, target: Tensor) -> Tensor:
    """Relative squared error of Gram matrices (B, C, C) against a target (C, C) -> (B,)."""
    if gram.dim() != 3 or gram.shape[-2:] != target.shape[-2:]:
        raise ValueError(f"gram {tuple(gram.shape)} does not match target {tuple(target.shape)}")
    return relative_error(gram - target, target, dims=(1, 2))


def masked_gram_matrix(features: Tensor, mask: Tensor) -> Tensor:
    """Channel correlations where ``mask`` (1, 1, H', W') in [0, 1] allows -> (B, C, C).

    Spatial control after Gatys et al., "Controlling Perceptual Factors in
    Neural Style Transfer" (CVPR 2017): the features are weighted by the mask
    (averaged down to the layer's resolution) and the sum is divided by the
    mask's own weight, so an all-white mask gives exactly :func:`gram_matrix`.
    """
    require_4d("features", features)
    batch, channels, height, width = features.shape
    mask = F.adaptive_avg_pool2d(mask, (height, width))  # (1, 1, H, W): each feature's share of its cell
    flat = (features * mask).reshape(batch, channels, height * width)
    weight = mask.square().sum().clamp_min(1e-8)
    return _self_products(flat) / weight  # (B, C, C)


class MaskedGramLoss(nn.Module):
    """Gram loss of the features inside a mask (1, 1, H, W) against one style's target Gram (C, C)."""

    target: Tensor
    mask: Tensor

    def __init__(self, target: Tensor, mask: Tensor) -> None:
        super().__init__()
        self.register_buffer("target", target.detach().clone())
        self.register_buffer("mask", mask.detach().clone())

    def forward(self, features: Tensor) -> Tensor:
        return gram_loss(masked_gram_matrix(features.float(), self.mask), self.target)

    def extra_repr(self) -> str:
        return f"channels={self.target.shape[0]}, mask={tuple(self.mask.shape[-2:])}"


class GramLoss(nn.Module):
    """Gram loss of a feature map against a target Gram matrix (C, C), kept in a buffer.

    The target is one style's Gram, or a blend: the weighted mean of several
    styles' Grams (Gatys et al. 2016, §3), given as a sequence with ``weights``.
    ``set_weights`` re-blends the same styles in place (a style may weigh 0),
    so a feed-forward network can train on many blends against one module.
    """

    target: Tensor
    styles: Tensor

    def __init__(self, target: Tensor | Sequence[Tensor], weights: Sequence[float] | None = None) -> None:
        super().__init__()
        grams = [_square(gram) for gram in ([target] if isinstance(target, Tensor) else target)]
        if not grams or len({gram.shape for gram in grams}) != 1:
            raise ValueError(f"targets must be one or more Gram matrices of one shape, got {[g.shape for g in grams]}")
        self.register_buffer("styles", torch.stack([gram.detach() for gram in grams]))  # (K, C, C)
        self.register_buffer("target", torch.empty_like(self.styles[0]))
        self.set_weights(weights)

    def set_weights(self, weights: Sequence[float] | None) -> None:
        """Blend the styles' Grams by ``weights`` (>= 0, normalized; None: equally)."""
        self.shares = blend_shares(weights, self.styles.shape[0])
        # Summed style by style, in order: one blend is the same number however it is reached.
        self.target = cast(Tensor, sum(share * gram for share, gram in zip(self.shares, self.styles)))

    def forward(self, features: Tensor) -> Tensor:
        # Grams are sums over many positions: fp32 keeps them accurate under autocast.
        return gram_loss(gram_matrix(features.float()), self.target)

    def extra_repr(self) -> str:
        blend = f", weights=[{', '.join(f'{share:.3g}' for share in self.shares)}]" if len(self.shares) > 1 else ""
        return f"channels={self.target.shape[0]}{blend}"
