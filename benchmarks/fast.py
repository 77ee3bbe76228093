"""The feed-forward path against the optimization path, side by side in one run on one device.

    python benchmarks/fast.py --device cpu      # about 15 minutes on 2 cores (the optimization side is most of it)

Textures (a texture model and its recipe): samples per second at the recipe's
size, ``sample`` against ``batch`` (both batched as each path batches on the
device), and the quality of both against the recipe's target: style distance,
sliced distance and worst window (``metrics.Measure``), diversity (the mean
pairwise feature distance of samples of different seeds ÷ the same between
optimized tiles of different seeds), and for tileable models the pixel and
perceptual seam averaged over the samples. A blend model at 50/50: its
distance to the blend's target and to each style's.

Style transfer (a transfer model and its recipe): milliseconds per 512 px
photo, ``apply`` against the optimization path (the recipe with that photo as
content), and on held-out photos at the recipe's size the style and content
distances of both outputs.

Every figure comes from this one run; the README quotes them with the date
and device printed in the header.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
from collections.abc import Sequence
from pathlib import Path

import torch

import texsynth
from texsynth.fast import FastModel, load_model
from texsynth.fast.apply import stylize
from texsynth.fast.sample import sample_images
from texsynth.io import load_image, save_image
from texsynth.metrics import Measure, pixel_seam
from texsynth.targets import style_image_size
from texsynth.tiles import tile_seed
from tiles import timed  # benchmarks/tiles.py

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
#: Photos the shipped transfer model never saw (it was trained on ../shared/photos), to judge it by.
HELD_OUT = (ROOT / "samples" / "photos" / "astronaut.jpg", ROOT / "samples" / "photos" / "coffee.jpg",
            ROOT / "recipes" / "images" / "chelsea.jpg")  # fmt: skip


def recipe_of(model: FastModel, *, size: int | None = None) -> texsynth.Recipe:
    """The model's own recipe (its images beside it as when it was trained), optionally resized."""
    return model.trained_recipe(size=size)


def style_images(recipe: texsynth.Recipe, long_side: int) -> list[torch.Tensor]:
    return [load_image(s.image, style_image_size(s.image, s.scale, long_side)) for s in recipe.styles]


def quality(measure: Measure, images: torch.Tensor, recipe: texsynth.Recipe, long_side: int) -> dict[str, float]:
    styles = style_images(recipe, long_side)
    weights = [s.weight for s in recipe.styles]
    grams = measure.grams(styles, weights)
    rows = [image[None] for image in images]
    result = {
        "style": statistics.mean(measure.style_distance(x, grams) for x in rows),
        "sliced": statistics.mean(measure.sliced_distance(x, styles, weights) for x in rows),
        "worst window": statistics.mean(measure.worst_window(x, grams) for x in rows),
        "diversity": measure.diversity(rows) if len(rows) > 1 else float("nan"),
    }
    if recipe.tileable:
        result["pixel seam"] = statistics.mean(pixel_seam(x) for x in rows)
        result["perceptual seam"] = statistics.mean(measure.perceptual_seam(x, grams) for x in rows)
    return result


def texture_part(args: argparse.Namespace, device: torch.device, measure: Measure, out: Path) -> list[str]:
    model = load_model(args.texture_model)
    recipe = recipe_of(model, size=args.size)
    width, height = recipe.output_size(None)
    seeds = [tile_seed(recipe.seed, index) for index in range(args.samples)]
    sample_images(model, seeds[:1], width=width, height=height, device=device)  # warm-up
    samples: list[torch.Tensor] = []
    sample_seconds = timed(
        device,
        lambda: samples.append(sample_images(model, seeds, width=width, height=height, device=device)),
    )
    optimized: list[torch.Tensor] = []
    opt_seeds = seeds[: args.optimized]
    opt_seconds = timed(
        device, lambda: optimized.append(texsynth.synthesize(recipe, device=device, seeds=opt_seeds).image)
    )
    for index, image in enumerate(samples[0][:4]):
        save_image(image, out / f"sample-{index}.png")
    for index, image in enumerate(optimized[0]):
        save_image(image, out / f"optimized-{index}.png")
    fast, slow = (
        quality(measure, samples[0], recipe, max(width, height)),
        quality(measure, optimized[0], recipe, max(width, height)),
    )
    fast_rate, slow_rate = len(seeds) / sample_seconds, len(opt_seeds) / opt_seconds
    lines = [
        f"(a) texture {args.texture_model.name}, {width}x{height} px, recipe {recipe.steps} steps",
        f"    samples per second: sample {fast_rate:.2f} ({1000 / fast_rate:.1f} ms each), "
        f"optimization {slow_rate:.4f} ({1 / slow_rate:.1f} s each): {fast_rate / slow_rate:.0f}x",
        f"    {'':<18}{'sample':>10}{'optimized':>11}{'ratio':>8}",
    ]
    for name in fast:
        ratio = fast[name] / slow[name] if slow[name] == slow[name] and slow[name] else float("nan")
        lines.append(f"    {name:<18}{fast[name]:>10.4f}{slow[name]:>11.4f}{ratio:>8.2f}")
    return lines


def blend_part(args: argparse.Namespace, device: torch.device, measure: Measure) -> list[str]:
    model = load_model(args.blend_model)
    recipe = recipe_of(model, size=args.size)
    width, height = recipe.output_size(None)
    seeds = [tile_seed(recipe.seed, index) for index in range(args.samples)]
    half = dict.fromkeys(model.styles, 1.0)
    images = sample_images(model, seeds, width=width, height=height, blend=half, device=device)
    styles = style_images(recipe, max(width, height))
    targets = {"the 50/50 blend": measure.grams(styles, [1.0] * len(styles))}
    for name, style in zip(model.styles, styles):
        targets[name] = measure.grams([style])
    lines = [f"(b) blend {args.blend_model.name} at 50/50, {width}x{height} px: style distance of its samples to"]
    for name, grams in targets.items():
        distance = statistics.mean(measure.style_distance(image[None], grams) for image in images)
        lines.append(f"    {name:<22}{distance:>10.4f}")
    return lines


def transfer_part(args: argparse.Namespace, device: torch.device, measure: Measure, out: Path) -> list[str]:
    model = load_model(args.transfer_model)
    photos = list(args.photos)[: args.held_out]
    base = recipe_of(model)
    long_side = max(base.output_size(None)) if isinstance(base.size, tuple) else base.size

    def optimized(photo: Path, size: int) -> torch.Tensor:
        recipe = model.trained_recipe(size=size, **{"content.image": str(photo.resolve())})
        return texsynth.synthesize(recipe, device=device).image

    # Speed at 512 px: one photo through each path.
    photo = load_image(photos[0])
    big = load_image(photos[0], _fit(photo.shape[-1], photo.shape[-2], args.speed_size))
    stylize(model, big, device=device)  # warm-up
    fast_ms = 1000 * min(timed(device, lambda: stylize(model, big, device=device)) for _ in range(3))
    slow_ms = 1000 * timed(device, lambda: optimized(photos[0], args.speed_size))
    lines = [
        f"(c) transfer {args.transfer_model.name}, held-out photos {', '.join(p.name for p in photos)}",
        f"    ms per {args.speed_size} px photo: apply {fast_ms:.0f}, optimization {slow_ms:.0f}: "
        f"{slow_ms / fast_ms:.0f}x",
    ]
    # Quality at the recipe's size, on each held-out photo.
    rows = {"apply": {"style": [], "content": []}, "optimized": {"style": [], "content": []}}
    recipe = recipe_of(model)
    for index, path in enumerate(photos):
        image = load_image(path)
        content = load_image(path, _fit(image.shape[-1], image.shape[-2], long_side))
        grams = measure.grams(style_images(recipe, long_side), [s.weight for s in recipe.styles])
        for name, result in (
            ("apply", stylize(model, content, device=device)),
            ("optimized", optimized(path, long_side)),
        ):
            rows[name]["style"].append(measure.style_distance(result, grams))
            rows[name]["content"].append(measure.content_distance(result, content))
            save_image(result, out / f"transfer-{index}-{name}.png")
    lines.append(f"    at {long_side} px{'':<10}{'apply':>10}{'optimized':>11}{'ratio':>8}")
    for metric in ("style", "content"):
        fast, slow = statistics.mean(rows["apply"][metric]), statistics.mean(rows["optimized"][metric])
        lines.append(f"    {metric + ' distance':<18}{fast:>10.4f}{slow:>11.4f}{fast / slow:>8.2f}")
    return lines


def _fit(width: int, height: int, long_side: int) -> tuple[int, int]:
    scale = long_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--texture-model", type=Path, default=MODELS / "brick.safetensors")
    parser.add_argument("--blend-model", type=Path, default=MODELS / "starry_scream.safetensors")
    parser.add_argument("--transfer-model", type=Path, default=MODELS / "starry_scream_photo.safetensors")
    parser.add_argument("--photos", type=Path, nargs="+", default=list(HELD_OUT), help="held-out photos")
    parser.add_argument("--size", type=int, default=None, help="texture size (default: the recipe's)")
    parser.add_argument("--samples", type=int, default=16, help="samples of each texture model")
    parser.add_argument("--optimized", type=int, default=2, help="tiles the optimization path makes")
    parser.add_argument("--held-out", type=int, default=2, help="held-out photos to judge transfers by")
    parser.add_argument("--speed-size", type=int, default=512, help="photo long side for the apply timing")
    parser.add_argument("--skip", nargs="*", default=[], choices=["texture", "blend", "transfer"])
    parser.add_argument("--out", type=Path, default=ROOT / "out" / "fast-benchmark", help="where images go")
    args = parser.parse_args(argv)
    device = texsynth.pick_device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    measure = Measure()
    print(f"texsynth feed-forward benchmark, {datetime.date.today()}, {name}, torch {torch.__version__}", flush=True)
    parts = [
        ("texture", lambda: texture_part(args, device, measure, args.out)),
        ("blend", lambda: blend_part(args, device, measure)),
        ("transfer", lambda: transfer_part(args, device, measure, args.out)),
    ]
    for part, run in parts:
        if part not in args.skip:
            print("\n".join(run()), flush=True)


if __name__ == "__main__":
    main()
