"""Early shape checks shared by the loss functions, with messages that name the bad value."""

from __future__ import annotations

from torch import Tensor


def require_4d(name: str, tensor: Tensor) -> None:
    if tensor.dim() != 4:
        raise ValueError(f"{name} must have shape (B, C, H, W), got {tuple(tensor.shape)}")


def relative_error(difference: Tensor, target: Tensor, dims: tuple[int, ...]) -> Tensor:
    """sum(difference²) / sum(target²) over ``dims``: a scale-free error, 1 for a zero guess -> (B,).

    A target with a batch dimension (as many dims as ``difference``) is summed
    over ``dims`` too, so each item is normalized by its own target (one item
    broadcasts to all); a target without one (a Gram matrix (C, C)) is summed whole.
    """
    energy = target.pow(2).sum(dims) if target.dim() == difference.dim() else target.pow(2).sum()
    return difference.pow(2).sum(dims) / energy.clamp_min(1e-12)
