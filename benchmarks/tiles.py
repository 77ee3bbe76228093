"""Tiles per second: one tile at a time vs the batched path, measured side by side in one run.

    python benchmarks/tiles.py --device cpu            # about 12 minutes on 2 cores (fewer with --style-loss gram)
    python benchmarks/tiles.py --device cuda --batch 16

Both sides make the same tiles (same recipe, size, steps and seeds) through
texsynth.synthesize: "one at a time" calls it once per seed, "batched" once per
batch of seeds. Timing covers the optimization only (targets and weights are
built before the clock starts, once per side, as a batch run does per batch).
On the CPU the batched path evaluates items one by one (that keeps each tile
bit-identical in any batch), so expect a ratio near 1 there; on a GPU the
batch is one tensor through VGG19.
"""

from __future__ import annotations

import argparse
import datetime
import time
from collections.abc import Callable
from pathlib import Path

import torch

import texsynth
from texsynth.tiles import tile_seed

ROOT = Path(__file__).resolve().parents[1]


def recipe(size: int, steps: int, style_loss: str) -> texsynth.Recipe:
    return texsynth.parse_recipe(
        {
            "size": size,
            "steps": steps,
            "tileable": True,
            "scales": 1,
            "style_loss": style_loss,
            "styles": [{"image": str(ROOT / "recipes" / "images" / "brick.jpg")}],
        }
    )


def timed(device: torch.device, function: Callable[[], object]) -> float:
    """Seconds that ``function`` takes on ``device``, waiting for the GPU's queue on both sides."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    function()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def tiles_per_second(device: torch.device, size: int, steps: int, tiles: int, batch: int, style_loss: str) -> float:
    job = recipe(size, steps, style_loss)
    seeds = [tile_seed(job.seed, index) for index in range(tiles)]
    texsynth.synthesize(job, device=device, seeds=seeds[:batch])  # warm-up: weights, cuDNN autotuning
    seconds = sum(
        timed(device, lambda chunk=seeds[i : i + batch]: texsynth.synthesize(job, device=device, seeds=chunk))
        for i in range(0, tiles, batch)
    )
    return tiles / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20, help="optimizer steps per tile")
    parser.add_argument("--tiles", type=int, default=8, help="tiles made by each side")
    parser.add_argument("--batch", type=int, default=8, help="batch size of the batched side")
    parser.add_argument(
        "--style-loss", default="auto", help="the recipe's style_loss (auto: texsynth's texture default)"
    )
    args = parser.parse_args()
    device = texsynth.pick_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"

    single = tiles_per_second(device, args.size, args.steps, args.tiles, 1, args.style_loss)
    batched = tiles_per_second(device, args.size, args.steps, args.tiles, args.batch, args.style_loss)
    print(f"texsynth tiles benchmark, {datetime.date.today()}, {name}, torch {torch.__version__}")
    print(f"{args.tiles} tiles of {args.size}x{args.size}, {args.steps} steps each, style_loss {args.style_loss}")
    print(f"{'path':<24}{'tiles/s':>10}{'steps/s':>10}")
    print(f"{'one at a time':<24}{single:>10.3f}{single * args.steps:>10.1f}")
    print(f"{f'batched ({args.batch})':<24}{batched:>10.3f}{batched * args.steps:>10.1f}")
    print(f"batched / one at a time: {batched / single:.2f}x")


if __name__ == "__main__":
    main()
