"""How near the device's arithmetic peak a step's pass through VGG19 runs, and what that bounds.

    python benchmarks/roofline.py --device cpu                       # the README's first command, ~2 minutes
    python benchmarks/roofline.py --device cpu --recipe recipes/starry_night.yaml
    python benchmarks/roofline.py --device cpu --matrix 256 --repeats 2 --sizes 32   # a smoke run

(a) The device's matrix-product rate: ``torch.mm`` of two ``--matrix`` × ``--matrix``
    matrices in fp32 and in bf16, GFLOP/s, median of ``--repeats``: the practical
    peak of its BLAS (bf16 is only faster where the hardware has it).
(b) VGG19 through the recipe's deepest layer, as a step of that recipe runs it
    (its padding, its precision on this device, ``make_extractor``'s settings):
    forward, and backward to the image only (the weights are frozen), at each
    scale of the recipe's pyramid. Floating-point operations are counted by
    ``torch.utils.flop_counter``; time is the median of ``--repeats``; the rate is
    shown as a ratio to (a)'s fp32 rate.
(c) The recipe's schedule (steps per scale) times (b): the seconds its
    optimization spends in VGG19 alone, and the same work at (a)'s fp32 rate,
    which no implementation of this schedule in fp32 can beat on this device.

There are no timed assertions anywhere: it only measures and prints. Run it on
an idle machine: two runs side by side on 2 cores halve each other.
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

import texsynth
from engine import step_milliseconds  # benchmarks/engine.py
from texsynth.api import output_size, pick_device
from texsynth.features import VGGFeatures
from texsynth.preflight import scale_plan
from texsynth.targets import make_extractor

ROOT = Path(__file__).resolve().parents[1]


def matrix_rate(side: int, dtype: torch.dtype, device: torch.device, repeats: int) -> float:
    """GFLOP/s of ``torch.mm`` of two side × side matrices, at the median of ``repeats``."""
    a = torch.rand(side, side, device=device, dtype=dtype)
    b = torch.rand(side, side, device=device, dtype=dtype)
    return 2 * side**3 / step_milliseconds(lambda: torch.mm(a, b), device, 1, repeats) / 1e6


def network_pass(
    recipe: texsynth.Recipe, extractor: VGGFeatures, device: torch.device, width: int, height: int, repeats: int
) -> tuple[float, float]:
    """(GFLOP, median seconds) of one forward and backward pass, as a step of ``recipe`` makes it."""
    image = torch.rand(1, 3, height, width, device=device, requires_grad=True)

    def run() -> None:
        features = extractor(image, padding=recipe.padding)
        losses = [value.float().square().mean() for name, value in features.items() if name != "input"]
        torch.stack(losses).sum().backward()

    with FlopCounterMode(display=False) as counter:
        run()
    return counter.get_total_flops() / 1e9, step_milliseconds(run, device, 1, repeats) / 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default=None, help="cpu, cuda, ... (default: the best available)")
    parser.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "brick.yaml")
    parser.add_argument("--matrix", type=int, default=2048, help="side of the matrices of (a)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="*", default=None,
                        help="long sides for (b) instead of the recipe's pyramid (no schedule then)")  # fmt: skip
    args = parser.parse_args()
    device = pick_device(args.device)
    torch.manual_seed(0)
    recipe = texsynth.load_recipe(args.recipe)
    width, height = output_size(recipe)
    if args.sizes:
        plan = [(round(width * s / max(width, height)), round(height * s / max(width, height)), 0) for s in args.sizes]
    else:
        plan = [(scale.width, scale.height, scale.steps) for scale in scale_plan(recipe, width, height)]

    print(f"# {datetime.date.today()}, {device.type}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    fp32 = matrix_rate(args.matrix, torch.float32, device, args.repeats)
    bf16 = matrix_rate(args.matrix, torch.bfloat16, device, args.repeats)
    print(f"(a) torch.mm {args.matrix}x{args.matrix}: fp32 {fp32:.0f} GFLOP/s, bf16 {bf16:.0f} GFLOP/s "
          f"({bf16 / fp32:.2f}x fp32)")  # fmt: skip

    extractor = make_extractor(recipe, device)
    print(f"(b) VGG19 to {recipe.deepest_layer}, forward + backward to the image, {recipe.padding} padding, "
          f"{extractor.precision}:")  # fmt: skip
    print("    size       GFLOP     ms   GFLOP/s   x (a) fp32   steps")
    in_network = at_peak = 0.0
    for w, h, steps in plan:
        flops, seconds = network_pass(recipe, extractor, device, w, h, args.repeats)
        rate = flops / seconds
        in_network += steps * seconds
        at_peak += steps * flops / fp32
        print(f"    {w:>4}x{h:<4} {flops:8.1f} {seconds * 1e3:7.0f} {rate:9.0f} {rate / fp32:10.2f} {steps:7}")
    if not args.sizes:
        print(f"(c) {args.recipe.name}'s schedule ({', '.join(f'{s} at {w}x{h}' for w, h, s in plan)}): "
              f"{in_network:.1f} s in VGG19 at (b)'s rates, {at_peak:.1f} s at (a)'s fp32 rate")  # fmt: skip


if __name__ == "__main__":
    main()
