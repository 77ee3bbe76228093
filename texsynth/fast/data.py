"""What the networks are fed: noise from seeds, the blends they train on, and (for transfer networks) photos.

Every random draw comes from a CPU ``torch.Generator`` seeded from plain
numbers, never from a global state: noise for sample ``i`` from that sample's
seed alone (so it is the same image in any batch, on any device), and each
training iteration's noise and blend from (run seed, iteration) alone (so a
resumed run draws exactly what an uninterrupted one would).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def iteration_generator(seed: int, iteration: int) -> torch.Generator:
    """The generator of one training iteration's draws: from (run seed, iteration) alone."""
    return torch.Generator().manual_seed((seed * 1_000_003 + iteration * 7919 + 17) % 2**63)


def sample_noise(shapes: Sequence[tuple[int, int, int]], seeds: Sequence[int]) -> list[Tensor]:
    """One noise tensor per scale, (B, C, H, W), item ``b`` drawn from ``seeds[b]`` alone (uniform in [0, 1))."""
    per_item = []
    for seed in seeds:
        generator = torch.Generator().manual_seed(seed)
        per_item.append([torch.rand((1, *shape), generator=generator) for shape in shapes])
    return [torch.cat([item[scale] for item in per_item]) for scale in range(len(shapes))]


def batch_noise(shapes: Sequence[tuple[int, int, int]], batch: int, generator: torch.Generator) -> list[Tensor]:
    """One noise tensor per scale for a training batch, (B, C, H, W), from ``generator``."""
    return [torch.rand((batch, *shape), generator=generator) for shape in shapes]


#: How often a training batch is one pure style, or the recipe's own blend; the rest are random mixtures.
PURE_SHARE = 1 / 3
RECIPE_SHARE = 1 / 6


def training_blend(recipe_weights: Sequence[float], generator: torch.Generator) -> list[float]:
    """The style weights of one training batch, summing to 1.

    A third of the batches are one pure style, a sixth the recipe's own blend
    (the default at sampling), the rest uniform random mixtures (a flat
    Dirichlet draw), so every blend is seen and the ends are seen most.
    """
    count = len(recipe_weights)
    total = float(sum(recipe_weights))
    if count == 1:
        return [1.0]
    draw = float(torch.rand((), generator=generator))
    if draw < PURE_SHARE:
        pure = int(torch.randint(count, (), generator=generator))
        return [1.0 if index == pure else 0.0 for index in range(count)]
    if draw < PURE_SHARE + RECIPE_SHARE:
        return [float(weight) / total for weight in recipe_weights]
    spread = -torch.log(torch.rand(count, generator=generator, dtype=torch.float64).clamp_min(1e-12))
    return (spread / spread.sum()).tolist()
