"""What the networks are fed: noise from seeds, the blends they train on, and photos for transfer networks.

Every random draw comes from a CPU ``torch.Generator`` seeded from plain
numbers, never from a global state: noise for sample ``i`` from that sample's
seed alone (so it is the same image in any batch, on any device), and each
training iteration's noise and blend from (run seed, iteration) alone (so a
resumed run draws exactly what an uninterrupted one would).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from ..errors import TexsynthError
from ..io import image_size, load_image, probe_image


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


# ---------------------------------------------------------------- photos for transfer networks

#: Photo files a content folder may hold (searched recursively, any case).
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


@dataclass(frozen=True)
class PhotoFolder:
    """The readable photos under a folder, in a fixed order, and the files that were skipped.

    A file that is not a readable image (its header does not open) is skipped,
    not fatal: a folder of thousands of photos often holds a stray file, and a
    long training run should not fail over it. The skipped files are counted
    in the summary and the model's training record; a folder with no readable
    photo at all is an error.
    """

    root: Path
    photos: tuple[Path, ...]
    skipped: tuple[Path, ...] = ()

    @classmethod
    def scan(cls, root: Path, *, field: str = "content_dir") -> PhotoFolder:
        root = Path(root)
        if not root.exists():
            raise TexsynthError(f"{field}: no such folder: {root}")
        if not root.is_dir():
            raise TexsynthError(f"{field}: not a folder: {root}")
        candidates = sorted(
            path for path in root.rglob("*") if path.is_file() and path.suffix.lower() in PHOTO_SUFFIXES
        )
        readable: list[Path] = []
        skipped: list[Path] = []
        for path in candidates:
            (skipped if probe_image(path) else readable).append(path)
        if not readable:
            found = f"{len(skipped)} unreadable files" if skipped else "no .jpg, .png or .webp files"
            raise TexsynthError(f"{field}: {root} holds no readable photos ({found})")
        return cls(root=root, photos=tuple(readable), skipped=tuple(skipped))

    def batch(self, count: int, size: int, generator: torch.Generator) -> Tensor:
        """``count`` random crops (count, 3, size, size), each from a random photo at a random scale.

        Each photo is resized so its short side is between ``size`` and 1.5 ×
        ``size`` (so a crop holds most of the picture, at varied scales), then
        cropped at a random place. A photo that fails to decode is replaced by
        the next one in order (its header was readable, its data was not).
        """
        crops = []
        for _ in range(count):
            index = int(torch.randint(len(self.photos), (), generator=generator))
            short_side = size * (1.0 + 0.5 * float(torch.rand((), generator=generator)))
            crops.append(self._crop(index, size, short_side, generator))
        return torch.cat(crops)

    def _crop(self, index: int, size: int, short_side: float, generator: torch.Generator) -> Tensor:
        for attempt in range(len(self.photos)):
            path = self.photos[(index + attempt) % len(self.photos)]
            try:
                width, height = image_size(path)
                scale = short_side / min(width, height)
                photo = load_image(path, (max(size, round(width * scale)), max(size, round(height * scale))))
            except TexsynthError:
                continue
            top = int(torch.randint(photo.shape[-2] - size + 1, (), generator=generator))
            left = int(torch.randint(photo.shape[-1] - size + 1, (), generator=generator))
            return photo[..., top : top + size, left : left + size]
        raise TexsynthError(f"content_dir: none of the photos under {self.root} could be decoded")
