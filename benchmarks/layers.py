"""Where an image's style distance goes: the Gram distance at each of Measure's layers, and over phases.

    python benchmarks/layers.py recipes/brick.yaml out/fast-benchmark/sample-*.png out/fast-benchmark/optimized-*.png
    python benchmarks/layers.py recipes/chelsea_starry_scream.yaml out/fast-benchmark/transfer-*.png --phases 0

For each image (judged at its own size, against the recipe's styles at that
size and the recipe's blend) it prints ``metrics.Measure``'s style distance,
the distance at each layer it averages, and, with ``--phases`` (default 4),
the mean and largest style distance over rolls of the image by multiples of
16 / phases px each way: VGG19 is not shift-invariant below its 16 px pooling
grid, so a figure at one phase may flatter an image made at that phase.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import texsynth
from texsynth.io import load_image
from texsynth.losses import gram_loss, gram_matrix
from texsynth.metrics import Measure
from texsynth.targets import style_image_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", type=Path)
    parser.add_argument("images", type=Path, nargs="+")
    parser.add_argument("--phases", type=int, default=4, help="rolls per axis (0: none)")
    args = parser.parse_args()
    recipe = texsynth.load_recipe(args.recipe)
    measure = Measure()
    print(f"{'image':<28}{'style':>8}" + "".join(f"{layer:>9}" for layer in measure.layers)
          + ("   phases: mean    max" if args.phases else ""))  # fmt: skip
    targets: dict[int, dict] = {}  # by long side: a benchmark's images mostly share one size
    for path in args.images:
        image = load_image(path)
        long_side = max(image.shape[-2:])
        if long_side not in targets:
            styles = [load_image(s.image, style_image_size(s.image, s.scale, long_side)) for s in recipe.styles]
            targets[long_side] = measure.grams(styles, [s.weight for s in recipe.styles])
        grams = targets[long_side]
        features = measure.extractor(image)
        layers = [float(gram_loss(gram_matrix(features[layer]), grams[layer])[0]) for layer in measure.layers]
        line = f"{path.name:<28}{measure.style_distance(image, grams):>8.4f}" + "".join(f"{v:>9.4f}" for v in layers)
        if args.phases:
            step = 16 // args.phases
            rolled = [
                measure.style_distance(image.roll((dy * step, dx * step), dims=(-2, -1)), grams)
                for dy in range(args.phases)
                for dx in range(args.phases)
            ]
            line += f"   {statistics.mean(rolled):>11.4f}{max(rolled):>7.4f}"
        print(line, flush=True)


if __name__ == "__main__":
    main()
