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
  The module draws the mixture as a sample instead, every step: N target
  positions, round(w_k·N) of them from style k, all of equal mass, so the
  pooled values need only sorting, where the exact mixture needs an arg-sort
  and weighted cumulative sums (2.4× the time of a whole two-style blend step
  on two CPU cores, ``benchmarks/losses.py``). The image has N positions, so
  its own distribution cannot hold a share more finely than 1/N anyway.
- **Projections** are C independent Gaussian directions scaled to unit norm,
  as in the paper's code, drawn per call from a generator the module owns, so
  a run is reproducible and all batch items see the same directions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import torch
from torch import Tensor, nn

from ._checks import blend_shares, require_4d
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

    The mean over a bin is a difference of the quantile function's integral
    I(t) = ∫₀ᵗ Q, which is piecewise linear with a knot where each sorted value's
    mass ends: a cumulative sum, read at the bin edges. That touches each value
    once, whatever the masses, where spreading each value's mass over the bins
    it covers took a dozen passes over a float64 copy (a two-style blend cost
    760 ms a step at relu1_1 on two CPU cores).
    """
    projected = [projections.t() @ target for target in targets]  # (P, M_k) each
    if len(projected) == 1:
        ordered = sort_values(projected[0])  # (P, M)
        masses = None  # each value weighs 1/M
    else:
        values = torch.cat(projected, dim=1)  # (P, L)
        order = argsort(values)  # which pooled value, hence which style's mass, comes when
        ordered = values.gather(1, order)
        each = torch.cat(
            [torch.full((v.shape[1],), share / v.shape[1], dtype=torch.float64) for share, v in zip(weights, projected)]
        ).to(values.device)
        masses = each[order]  # (P, L)
    return _bin_means(ordered, masses, count)


def _bin_means(ordered: Tensor, masses: Tensor | None, count: int) -> Tensor:
    """Means of the quantile function of sorted ``ordered`` (P, L) over ``count`` equal bins of levels.

    ``masses`` (P, L) sum to 1 per row; None means 1/L each. Levels are
    computed in float64: bins are 1/count wide, and in float32 a level near 1
    is only known to 2⁻²⁴, a few % of a bin at count = 2¹⁸ (MPS has no
    float64; there it is float32).
    """
    exact = torch.float32 if ordered.device.type == "mps" else torch.float64
    rows, length = ordered.shape
    if masses is None and length == count:
        return ordered  # one value per bin
    if masses is None and length < count:
        # Each bin is no wider than a value's levels, so it spans one value or two
        # neighbours, at fixed places: a weighted mean of two gathered columns.
        bins = torch.arange(count, device=ordered.device)
        first = bins * length // count  # the value where bin i starts (exact integers)
        in_first = (((first + 1) * count - bins * length).to(exact) / length).clamp(max=1)
        second = (first + 1).clamp(max=length - 1)
        return torch.lerp(
            ordered.index_select(1, second), ordered.index_select(1, first), in_first.to(ordered.dtype)
        )
    values = ordered.to(exact)
    edges = torch.linspace(0, 1, count + 1, device=ordered.device, dtype=exact)  # (count + 1,)
    zero = values.new_zeros(rows, 1)
    if masses is None:
        # Value j holds the levels [j/L, (j+1)/L): the one at level t is j = ⌊t·L⌋.
        integral = torch.cat([zero, values.cumsum(dim=1) / length], dim=1)  # I at each value's start, (P, L + 1)
        scaled = edges * length
        index = scaled.floor().clamp(0, length).long().expand(rows, -1)  # (P, count + 1)
        into = (scaled - index[0]).expand(rows, -1) / length  # levels past that value's start
    else:
        masses = masses.to(exact)
        ends = masses.cumsum(dim=1)  # (P, L): where each value's levels end
        integral = torch.cat([zero, (values * masses).cumsum(dim=1)], dim=1)
        index = torch.searchsorted(ends, edges.expand(rows, -1).contiguous(), right=True).clamp(max=length)
        starts = torch.cat([zero, ends], dim=1)
        into = (edges - starts.gather(1, index)).clamp_min(0)
    # Past the last value (t = 1) there is nothing more to add: pad with a zero value.
    padded = torch.cat([values, zero], dim=1)
    at_edges = integral.gather(1, index) + padded.gather(1, index) * into  # I(edge), (P, count + 1)
    return ((at_edges[:, 1:] - at_edges[:, :-1]) * count).to(ordered.dtype)


def sliced_wasserstein_loss(
    features: Tensor,
    targets: Tensor | Sequence[Tensor],
    projections: Tensor,
    weights: Sequence[float] | None = None,
    *,
    energy: Tensor | None = None,
) -> Tensor:
    """Relative sliced-Wasserstein error of ``features`` against a target distribution -> (B,).

    - ``features``: (B, C, H, W), the generated image's activations.
    - ``targets``: one (C, M) matrix whose columns are target feature vectors
      (M may differ from H·W), or a sequence of K such matrices for a blend.
    - ``projections``: (C, P) unit directions, shared by all batch items.
    - ``weights``: K shares of the blend (>= 0, normalized); default equal.
    - ``energy``: the normalizer, E‖x‖²/C of the target distribution; by
      default computed from ``targets`` (pass it when they are a sample).

    Per item: mean over directions and positions of (sorted projection −
    target quantile)², divided by E‖x‖²/C of the target. Zero for a feature set
    with the target's distribution in any order; about 1 for all-zero features.
    Batch items are independent: item i's value and gradient use item i alone.
    """
    target_list = [targets] if isinstance(targets, Tensor) else list(targets)
    _check(features, target_list, projections)
    shares = blend_shares(weights, len(target_list))
    # A style with no weight adds no mass: skip its projection and sort.
    kept = [(share, target) for share, target in zip(shares, target_list) if share > 0]
    target_list, shares = [target for _, target in kept], [share for share, _ in kept]

    batch, channels, height, width = features.shape
    projected = projections.t() @ features.reshape(batch, channels, height * width)  # (B, P, N)
    generated = sort_with_gradient(projected)  # (B, P, N)
    quantiles = target_quantiles(target_list, shares, projections.to(generated.dtype), height * width)  # (P, N)
    if energy is None:
        energy = mean_squared_projection(target_list, shares)
    return (generated - quantiles).pow(2).mean(dim=(1, 2)) / energy.clamp_min(1e-12)


def mean_squared_projection(targets: Sequence[Tensor], shares: Sequence[float]) -> Tensor:
    """E over unit directions d of (dᵀx)², which is E‖x‖²/C, for the mixture of ``targets`` (C, M_k)."""
    total = cast(Tensor, sum(share * target.pow(2).sum(dim=0).mean() for share, target in zip(shares, targets)))
    return total / targets[0].shape[0]


def apportion(shares: Sequence[float], total: int) -> list[int]:
    """Whole numbers in proportion to ``shares`` (normalized) that sum to ``total`` (largest remainders)."""
    exact = [share * total for share in shares]
    counts = [math.floor(value) for value in exact]
    by_remainder = sorted(range(len(shares)), key=lambda i: counts[i] - exact[i])  # largest remainder first
    for index in by_remainder[: max(0, total - sum(counts))]:
        counts[index] += 1
    return counts


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
    ``set_weights`` re-blends the same styles (a style may weigh 0), so a
    feed-forward network can train on many blends against one module.
    """

    energy: Tensor

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
        subsample = torch.Generator().manual_seed(seed)
        kept = [_positions(target.detach(), max_positions, subsample).float().clone() for target in target_list]
        channels = {target.shape[0] for target in kept}
        if len(channels) != 1:
            raise ValueError(f"targets must all have the same channels, got {sorted(channels)}")
        self.channels = channels.pop()
        self.count = int(projections) if projections is not None else self.channels
        if self.count < 1:
            raise ValueError(f"projections must be >= 1, got {projections}")
        self.styles = len(kept)
        for index, target in enumerate(kept):
            self.register_buffer(f"target_{index}", target)  # (C, M_k)
        self.register_buffer("energy", torch.zeros(()))
        self.set_weights(weights)
        #: The seed given at construction; ``reseed_from`` derives new sequences from it.
        self.base_seed = seed
        self.seed = seed
        self._generator: torch.Generator | None = None

    def set_weights(self, weights: Sequence[float] | None) -> None:
        """Blend the styles by ``weights`` (>= 0, normalized; None: equally) from the next call on."""
        self.shares = blend_shares(weights, self.styles)
        # Fixed per blend, so the loss's scale does not wander with the projections or the samples.
        self.energy = mean_squared_projection(self.targets, self.shares)

    @property
    def targets(self) -> list[Tensor]:
        return [getattr(self, f"target_{index}") for index in range(self.styles)]

    def reseed(self, seed: int | None = None) -> None:
        """Restart the projection sequence (from ``seed``, else the one given at construction)."""
        if seed is not None:
            self.seed = seed
        self._generator = None

    def reseed_from(self, seed: int) -> None:
        """Restart the sequence from one derived from ``seed`` and this module's own seed.

        A training loop reseeds every iteration from (run seed, iteration), so
        iteration i draws the same projections whether or not the run was resumed.
        """
        self.reseed((self.base_seed * 1_000_003 + seed) % 2**63)

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
            generator = self._generator_on(features.device)
            projections = random_projections(self.channels, self.count, generator=generator, device=features.device)
            targets, shares = self._match_targets(features.shape[-2] * features.shape[-1], generator)
            return sliced_wasserstein_loss(features, targets, projections, shares, energy=self.energy)

    def _match_targets(self, count: int, generator: torch.Generator) -> tuple[list[Tensor], list[float] | None]:
        """What an image of ``count`` positions is matched against: targets (C, M_k) and their shares.

        One style: its positions. A blend: one equal-mass sample of the mixture.
        """
        counts = apportion(self.shares, count)
        drawn = [(share_count, target) for share_count, target in zip(counts, self.targets) if share_count > 0]
        if len(drawn) == 1:  # one style, or the others' shares round to nothing at this size
            return [drawn[0][1]], None
        return [self._mixture_sample(drawn, generator)], None

    @staticmethod
    def _mixture_sample(drawn: Sequence[tuple[int, Tensor]], generator: torch.Generator) -> Tensor:
        """A sample of the blend (C, Σ n_k): n_k positions from each style's target (C, M_k).

        Without replacement while a style has enough positions; a style with
        too few gives each of them equally often, then a random few once more.
        """
        pieces = []
        for share_count, target in drawn:
            positions = target.shape[1]
            whole, rest = divmod(share_count, positions)
            chosen = torch.randperm(positions, generator=generator, device=target.device)[:rest]
            if whole:
                chosen = torch.cat([torch.arange(positions, device=target.device).repeat(whole), chosen])
            pieces.append(target.index_select(1, chosen))
        return torch.cat(pieces, dim=1)

    def extra_repr(self) -> str:
        positions = [target.shape[1] for target in self.targets]
        shares = ", ".join(f"{share:.3g}" for share in self.shares)
        return f"channels={self.channels}, positions={positions}, projections={self.count}, weights=[{shares}]"
