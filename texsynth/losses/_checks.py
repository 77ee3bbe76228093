"""Early shape checks shared by the loss functions, with messages that name the bad value."""

from __future__ import annotations

import math
from collections.abc import Sequence

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


def blend_shares(weights: Sequence[float] | None, count: int) -> list[float]:
    """Check and normalize the weights of ``count`` styles (>= 0, summing to more than 0); None: equal.

    Python floats, so checking them needs no device sync.
    """
    if weights is None:
        return [1.0 / count] * count
    values = [float(w) for w in weights]
    if len(values) != count:
        raise ValueError(f"weights has {len(values)} values for {count} targets: {values}")
    for index, value in enumerate(values):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"weights[{index}] must be finite and >= 0, got {value}")
    total = sum(values)
    if not total > 0:
        raise ValueError(f"weights must sum to more than 0, got {values}")
    return [value / total for value in values]
