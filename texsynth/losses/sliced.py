"""Sliced-Wasserstein style loss (Heitz, Vanhoey, Chambon & Belcour, "A Sliced
Wasserstein Loss for Neural Texture Synthesis", CVPR 2021).

A layer's features are a cloud of H·W points in C dimensions. Projected onto a
random direction they become H·W numbers; sorting them gives their 1-D
distribution, and the squared difference of two sorted lists is the squared
1-D Wasserstein distance. Averaged over random directions, re-drawn every
step, this matches the whole distribution of the features, which the Gram
matrix (its second moments only) does not.

Where the code departs from the paper:

- **Relative normalization.** The paper's loss is the plain mean squared
  difference. Here it is divided by the target's mean squared projection,
  E_d[(dᵀx)²] = E‖x‖² / C for a uniformly random unit direction d: a fixed
  number, known before the first step, so the normalizer adds no noise and a
  zero guess scores 1 on average over directions, as the relative Gram error
  does. A weight near 1 means the same for both losses.
- **Different counts.** The paper assumes as many target as generated
  positions and compares sorted lists. Here the target is read as a
  distribution: the i-th smallest of the N generated values is matched to the
  mean of the target's quantile function over the levels [i/N, (i+1)/N). The
  gradient is then exactly that of the 1-D Wasserstein-2 distance (the value
  differs from it by the target's spread inside the bins, a constant), so a
  style image of any size works; with N target values it is the paper's
  sorted-list loss.
- **Blends.** Several styles with weights form one mixture distribution: the
  pooled projected values, each weighing w_k/N_k, sorted, with cumulative
  weights giving each value its slice of the levels. One style is the special
  case. (Averaging the styles' quantile functions instead would give their
  Wasserstein barycenter, a texture in between rather than one with both.)
- **Projections** are C independent Gaussian directions scaled to unit norm,
  as in the paper's code, drawn per call from a generator the module owns, so
  a run is reproducible and all batch items see the same directions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ._checks import require_4d
from .sorting import argsort, sort_values, sort_with_gradient

#: Target positions kept per style image. Sorting a target's projections costs
#: as much as the generated image's, every step; a 1024 px style image has a
#: million positions at relu1_1 (256 MB of features). A uniform random subset of
#: 65536 places each quantile within about 1/√65536 ≈ 0.4% of its level, no
#: coarser than the 1/65536 bins of a 256 px output at relu1_1 average over anyway.
MAX_TARGET_POSITIONS = 65536


def random_projections(
    channels: int,
    count: int,
    *,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """``count`` random unit directions in ``channels`` dimensions, as columns (C, P)."""
    directions = torch.randn(channels, count, generator=generator, device=device, dtype=dtype)  # (C, P)
    return directions / directions.norm(dim=0, keepdim=True).clamp_min(1e-12)


def _blend_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    """Check and normalize style weights (Python floats: checking them needs no device sync)."""
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


def _check(features: Tensor, targets: Sequence[Tensor], projections: Tensor) -> None:
    require_4d("features", features)
    channels = features.shape[1]
    if len(targets) == 0:
        raise ValueError("targets is empty: give at least one (C, M) target matrix")
    for index, target in enumerate(targets):
        if target.dim() != 2 or target.shape[0] != channels or target.shape[1] == 0:
            raise ValueError(
                f"targets[{index}] must have shape (C={channels}, M>0) to match features "
                f"{tuple(features.shape)}, got {tuple(target.shape)}"
            )
    if projections.dim() != 2 or projections.shape[0] != channels:
        raise ValueError(f"projections must have shape (C={channels}, P), got {tuple(projections.shape)}")


def target_quantiles(
    targets: Sequence[Tensor], weights: Sequence[float], projections: Tensor, count: int
) -> Tensor:
    """The mixture's projected quantile function averaged over ``count`` equal bins -> (P, count).

    ``targets`` are K matrices (C, M_k) of target feature vectors and ``weights``
    their normalized shares; each vector of style k weighs w_k/M_k. Bin i covers
    the levels [i/count, (i+1)/count): the value the i-th smallest of ``count``
    generated values should take to be as close as possible, in 1-D
    Wasserstein-2, to the target. With one style and M == count it is the
    sorted target itself.
    """
    pieces, masses = [], []
    for share, target in zip(weights, targets):
        positions = target.shape[1]
        # Repeat a small target so no value weighs more than a bin: then each
        # value's mass falls into at most two bins, which scatter_add can place.
        copies = max(1, math.ceil(share * count / positions))
        values = projections.t() @ target  # (P, M_k)
        pieces.append(values.repeat(1, copies) if copies > 1 else values)
        masses.append(share / (positions * copies))
    values = torch.cat(pieces, dim=1) if len(pieces) > 1 else pieces[0]  # (P, L)
    if len(pieces) == 1:
        ordered = sort_values(values)  # (P, L)
    else:
        order = argsort(values)  # (P, L): which pooled value, hence which style's mass, comes when
        ordered = values.gather(1, order)
    # Where each value's mass lies in [0, 1], in float64: bins are 1/N wide, and
    # in float32 a level near 1 is only known to 2⁻²⁴, a few % of a bin at N = 2¹⁸.
    # (MPS has no float64; there it is float32, with that error.)
    exact = torch.float32 if ordered.device.type == "mps" else torch.float64
    if len(pieces) == 1:
        ranks = torch.arange(ordered.shape[1] + 1, device=ordered.device, dtype=exact)  # (L + 1,)
        start, end = ranks[:-1] * masses[0], ranks[1:] * masses[0]  # (L,) each
    else:
        each = torch.cat(
            [torch.full((p.shape[1],), m, device=ordered.device, dtype=exact) for p, m in zip(pieces, masses)]
        )  # (L,): the mass of each pooled value
        mass = each[order]  # (P, L): the mass of each sorted value
        end = mass.cumsum(dim=1)
        start = end - mass
    first_bin = (start * count).floor().clamp(0, count - 1)
    in_first = (torch.minimum(end, (first_bin + 1) / count) - start).clamp_min(0)
    in_second = (end - start - in_first).clamp_min(0)
    first_bin, in_first, in_second = (
        t.expand_as(ordered) for t in (first_bin.long(), in_first.to(ordered.dtype), in_second.to(ordered.dtype))
    )
    sums = torch.zeros(ordered.shape[0], count + 1, device=ordered.device, dtype=ordered.dtype)
    # Column ``count`` only catches rounding spill past the last bin.
    sums = sums.scatter_add(1, first_bin, ordered * in_first).scatter_add(1, first_bin + 1, ordered * in_second)
    return sums[:, :count] * count  # (P, N)


def sliced_wasserstein_loss(
    features: Tensor,
    targets: Tensor | Sequence[Tensor],
    projections: Tensor,
    weights: Sequence[float] | None = None,
) -> Tensor:
    """Relative sliced-Wasserstein error of ``features`` against a target distribution -> (B,).

    - ``features``: (B, C, H, W), the generated image's activations.
    - ``targets``: one (C, M) matrix whose columns are target feature vectors
      (M may differ from H·W), or a sequence of K such matrices for a blend.
    - ``projections``: (C, P) unit directions, shared by all batch items.
    - ``weights``: K shares of the blend (>= 0, normalized); default equal.

    Per item: mean over directions and positions of (sorted projection −
    target quantile)², divided by E‖x‖²/C of the target. Zero for a feature set
    with the target's distribution in any order; about 1 for all-zero features.
    Batch items are independent: item i's value and gradient use item i alone.
    """
    target_list = [targets] if isinstance(targets, Tensor) else list(targets)
    _check(features, target_list, projections)
    shares = _blend_weights(weights, len(target_list))
    # A style with no weight adds no mass: skip its projection and sort.
    kept = [(share, target) for share, target in zip(shares, target_list) if share > 0]
    target_list, shares = [target for _, target in kept], [share for share, _ in kept]

    batch, channels, height, width = features.shape
    projected = projections.t() @ features.reshape(batch, channels, height * width)  # (B, P, N)
    generated = sort_with_gradient(projected)  # (B, P, N)
    quantiles = target_quantiles(target_list, shares, projections.to(generated.dtype), height * width)  # (P, N)
    # E over unit directions d of (dᵀx)² is ‖x‖²/C: the expected mean squared projection.
    energy = sum(share * target.pow(2).sum(dim=0).mean() for share, target in zip(shares, target_list)) / channels
    return (generated - quantiles).pow(2).mean(dim=(1, 2)) / energy.clamp_min(1e-12)


def _positions(target: Tensor, limit: int, generator: torch.Generator) -> Tensor:
    """(1, C, H, W) or (C, H, W) or (C, M) -> (C, M'), at most ``limit`` positions, a uniform random subset."""
    if target.dim() == 4:
        if target.shape[0] != 1:
            raise ValueError(f"a target must be one image's features (1, C, H, W), got {tuple(target.shape)}")
        target = target[0]
    if target.dim() == 3:
        target = target.flatten(1)
    if target.dim() != 2 or target.shape[1] == 0:
        raise ValueError(f"a target must have shape (1, C, H, W), (C, H, W) or (C, M), got {tuple(target.shape)}")
    if target.shape[1] > limit:
        keep = torch.randperm(target.shape[1], generator=generator)[:limit].sort().values
        target = target[:, keep.to(target.device)]
    return target


class SlicedWassersteinLoss(nn.Module):
    """Sliced-Wasserstein loss of a feature map against one style's features or a weighted blend.

    ``targets`` are the style images' activations at this layer, each (1, C, H, W)
    (any sizes), kept in buffers after subsampling to ``max_positions`` each.
    ``projections`` directions (default C) are re-drawn on every call from a
    generator seeded with ``seed``, created on the features' device at the first
    call (moving the module to another device restarts the sequence there).
    """

    def __init__(
        self,
        targets: Tensor | Sequence[Tensor],
        weights: Sequence[float] | None = None,
        *,
        projections: int | None = None,
        max_positions: int = MAX_TARGET_POSITIONS,
        seed: int = 0,
    ) -> None:
        super().__init__()
        target_list = [targets] if isinstance(targets, Tensor) else list(targets)
        if not target_list:
            raise ValueError("targets is empty: give at least one style's features")
        if max_positions < 1:
            raise ValueError(f"max_positions must be >= 1, got {max_positions}")
        shares = _blend_weights(weights, len(target_list))
        subsample = torch.Generator().manual_seed(seed)
        kept = [
            (share, _positions(target.detach(), max_positions, subsample).float().clone())
            for share, target in zip(shares, target_list)
            if share > 0
        ]
        channels = {target.shape[0] for _, target in kept}
        if len(channels) != 1:
            raise ValueError(f"targets must all have the same channels, got {sorted(channels)}")
        self.channels = channels.pop()
        self.count = int(projections) if projections is not None else self.channels
        if self.count < 1:
            raise ValueError(f"projections must be >= 1, got {projections}")
        self.shares = [share for share, _ in kept]
        for index, (_, target) in enumerate(kept):
            self.register_buffer(f"target_{index}", target)  # (C, M_k)
        self.seed = seed
        self._generator: torch.Generator | None = None

    @property
    def targets(self) -> list[Tensor]:
        return [getattr(self, f"target_{index}") for index in range(len(self.shares))]

    def reseed(self, seed: int | None = None) -> None:
        """Restart the projection sequence (from ``seed``, else the one given at construction)."""
        if seed is not None:
            self.seed = seed
        self._generator = None

    def generator_state(self) -> Tensor | None:
        """The projection generator's state (None before the first draw), for :meth:`set_generator_state`."""
        return self._generator.get_state() if self._generator is not None else None

    def set_generator_state(self, state: Tensor | None) -> None:
        """Draw again from ``state``: None restarts from the seed."""
        if state is None:
            self._generator = None
        else:
            assert self._generator is not None
            self._generator.set_state(state)

    def _generator_on(self, device: torch.device) -> torch.Generator:
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
        return self._generator

    def forward(self, features: Tensor) -> Tensor:
        # Projections that are sorted and matched value by value need fp32: under
        # autocast the matmuls would run in bf16 (3 significant digits), coarser
        # than the gaps between neighbouring sorted values.
        with torch.autocast(features.device.type, enabled=False):
            features = features.float()
            projections = random_projections(
                self.channels, self.count, generator=self._generator_on(features.device), device=features.device
            )
            return sliced_wasserstein_loss(features, self.targets, projections, self.shares)

    def extra_repr(self) -> str:
        positions = [target.shape[1] for target in self.targets]
        shares = ", ".join(f"{share:.3g}" for share in self.shares)
        return f"channels={self.channels}, positions={positions}, projections={self.count}, weights=[{shares}]"
