"""Which style loss makes better textures? Each loss judged by distances it does not optimize.

    python benchmarks/quality.py                       # 4 textures × 3 losses at 128 px, ~25 min on 2 CPU cores
    python benchmarks/quality.py --size 96 --steps 60  # a quick look

For every texture in recipes/images (brick, grass, gravel, starry night) and
every style loss (gram, sliced_wasserstein, both), one texture is synthesized
from the same seed and start, then measured with two yardsticks:

- Gram distance: texsynth.metrics.Measure.style_distance (relative Gram error
  over relu1_1..relu5_1) — what the Gram loss optimizes, not the SW loss;
- SW distance: Measure.sliced_distance, sliced Wasserstein over the same layers
  with its own fixed projections — what no run sees (the SW loss draws others).

A loss that lowers the yardstick it does not train on has learned more of the
texture than its own objective. Images are written to --out for a look.
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path

import torch

import texsynth
from texsynth.io import load_image, save_image
from texsynth.metrics import Measure
from texsynth.targets import style_image_size

ROOT = Path(__file__).resolve().parents[1]
TEXTURES = ("brick.jpg", "grass.jpg", "gravel.jpg", "starry_night.jpg")
LOSSES = ("gram", "sliced_wasserstein", "gram+sliced_wasserstein")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--textures", nargs="+", default=list(TEXTURES))
    parser.add_argument("--losses", nargs="+", default=list(LOSSES))
    parser.add_argument("--out", type=Path, default=Path("out/quality"))
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = texsynth.pick_device(args.device)
    measure = Measure()
    rows = []
    for texture in args.textures:
        path = ROOT / "recipes" / "images" / texture
        recipe = {"size": args.size, "steps": args.steps, "scales": 1, "styles": [{"image": str(path)}]}
        style = load_image(path, style_image_size(path, 1.0, args.size))
        grams = measure.grams([style])
        for loss in args.losses:
            result = texsynth.synthesize(texsynth.parse_recipe({**recipe, "style_loss": loss}), device=device)
            image = result.image
            save_image(image, args.out / f"{Path(texture).stem}-{loss.replace('+', '-')}.png")
            rows.append(
                (
                    texture,
                    loss,
                    measure.style_distance(image, grams),
                    measure.sliced_distance(image, [style]),
                    result.seconds,
                )
            )
            print(
                f"{texture:<18}{loss:<26}gram {rows[-1][2]:.4f}  sw {rows[-1][3]:.4f}  {rows[-1][4]:.0f}s", flush=True
            )

    print(
        f"\nstyle-loss quality, {datetime.date.today()}, {device}, {args.size} px, {args.steps} steps, "
        f"torch {torch.__version__}"
    )
    print(f"{'texture':<18}{'loss':<26}{'Gram dist':>10}{'SW dist':>10}{'seconds':>9}")
    for texture, loss, gram, sliced, seconds in rows:
        print(f"{texture:<18}{loss:<26}{gram:>10.4f}{sliced:>10.4f}{seconds:>9.0f}")
    for loss in args.losses:
        mine = [r for r in rows if r[1] == loss]
        base = [r for r in rows if r[1] == "gram"]
        if loss != "gram" and base:
            ratios = [m[3] / b[3] for m, b in zip(mine, base)]
            print(f"{loss}: SW distance vs gram's, per texture: " + ", ".join(f"{r:.2f}" for r in ratios))


if __name__ == "__main__":
    main()
