"""The engine's own choices, measured side by side in one run: precision, memory layout,
torch.compile, batching, memory per megapixel, and bf16 against fp32.

    python benchmarks/engine.py --device cuda            # about 3 minutes on an H100
    python benchmarks/engine.py --device cpu --size 64 --tile-size 64 --sizes 128 --batches 1 2   # a smoke run

(a) Milliseconds per optimizer step (one loss + gradient evaluation and one
    L-BFGS update) of the Gram + content objective through relu5_1 at
    ``--size`` (style Starry Night, content Chelsea), for each engine setting:
    fp32 (TF32 off), TF32, bf16 autocast + channels_last (texsynth's CUDA
    default), and the last under ``torch.compile``. Median of ``--repeats``
    timed steps after warm-up steps.
(b) Batched texture tiles (``--tile-size``, style brick, tileable): image
    evaluations per second at each ``--batches`` batch size.
(c) Peak device memory of a whole texture run (coarse-to-fine, as the recipe
    defaults do it) at each ``--sizes`` long side, and per megapixel.
(d) bf16 against fp32: the same texture recipe and seed at ``--size`` in both
    precisions; each result's Gram distance to the style, and how far apart the
    two images are. The images go to ``--out`` for a look.

There are no timed assertions anywhere: it only measures and prints.
"""

from __future__ import annotations

import argparse
import datetime
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

import texsynth
from texsynth.api import output_size
from texsynth.io import load_image, save_image
from texsynth.lbfgs import BatchedLBFGS
from texsynth.metrics import Measure
from texsynth.optimize import EAGER_STEPS, capture_step, evaluate
from texsynth.targets import compile_at, make_extractor, objective, style_image_size

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "recipes" / "images"


def transfer_recipe(size: int, precision: str) -> texsynth.Recipe:
    return texsynth.parse_recipe(
        {
            "size": size,
            "scales": 1,
            "precision": precision,
            "styles": [{"image": str(IMAGES / "starry_night.jpg")}],
            "content": {"image": str(IMAGES / "chelsea.jpg")},
        }
    )


def texture_recipe(size: int, *, style: str = "starry_night.jpg", **fields) -> texsynth.Recipe:
    return texsynth.parse_recipe({"size": size, "styles": [{"image": str(IMAGES / style)}], **fields})


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_milliseconds(step: Callable[[], None], device: torch.device, warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def optimizer_step(
    recipe: texsynth.Recipe,
    device: torch.device,
    *,
    batch: int = 1,
    compiled: bool = False,
    update: bool = True,
    graphed: bool = False,
) -> Callable[[], None]:
    """One evaluation + L-BFGS update of ``recipe``'s objective on a batch, as texsynth's loop does it."""
    width, height = output_size(recipe)
    extractor = make_extractor(recipe, device)
    stage = compile_at(recipe, extractor, width, height)
    if compiled:
        extractor = torch.compile(extractor)
    loss_of = objective(stage, extractor, recipe.padding, device)
    generator = torch.Generator().manual_seed(0)
    variable = torch.rand((batch, 3, height, width), generator=generator).to(device).requires_grad_(True)
    lbfgs = BatchedLBFGS(variable)

    def step() -> None:
        _, total = evaluate(loss_of, variable)
        (gradient,) = torch.autograd.grad(total.sum(), variable)
        if update:
            lbfgs.update(gradient, total.detach())

    return captured(step) if graphed else step


def captured(step: Callable[[], None]) -> Callable[[], None]:
    """``step`` recorded once in a CUDA graph and replayed, as texsynth's loop does: what launch overhead costs."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):  # warm up (cuDNN autotuning, the optimizer's first step) off the capture
        for _ in range(EAGER_STEPS):
            step()
    torch.cuda.current_stream().wait_stream(side)
    return capture_step(step)


#: (label, precision, TF32 for matmuls, TF32 for convolutions, torch.compile, optimizer update, CUDA graph)
SETTINGS = [
    ("fp32, TF32 off", "fp32", False, False, False, True, False),
    ("fp32 + TF32", "fp32", True, True, False, True, False),
    ("bf16 + channels_last (default)", "auto", False, True, False, True, False),
    ("  evaluation alone, no update", "auto", False, True, False, False, False),
    ("  the default + torch.compile", "auto", False, True, True, True, False),
    ("  the default in a CUDA graph", "auto", False, True, False, True, True),
    ("  fp32 + TF32 in a CUDA graph", "fp32", True, True, False, True, True),
]


def engine_settings(args, device: torch.device) -> list[tuple[str, float]]:
    rows = []
    for label, precision, matmul_tf32, conv_tf32, compiled, update, graphed in SETTINGS:
        if graphed and device.type != "cuda":
            continue
        try:
            torch.backends.cuda.matmul.allow_tf32 = matmul_tf32
            torch.backends.cudnn.allow_tf32 = conv_tf32
            step = optimizer_step(
                transfer_recipe(args.size, precision), device, compiled=compiled, update=update, graphed=graphed
            )
            torch.backends.cuda.matmul.allow_tf32 = matmul_tf32  # after make_extractor, which sets its own
            torch.backends.cudnn.allow_tf32 = conv_tf32
            rows.append((label, step_milliseconds(step, device, args.warmup * (4 if compiled else 1), args.repeats)))
        except Exception as error:  # a failing variant is reported, the rest still run
            rows.append((label, float("nan")))
            print(f"{label}: failed: {type(error).__name__}: {str(error).splitlines()[0][:200]}", flush=True)
        print(f"(a) {label}: {rows[-1][1]:.2f} ms/step", flush=True)
    torch.backends.cuda.matmul.allow_tf32 = False
    return rows


def batched_tiles(args, device: torch.device) -> list[tuple[int, float]]:
    rows = []
    # Brick, square: a 32 px tile of the wide Starry Night would be too thin for its mirror-padded style.
    recipe = texture_recipe(args.tile_size, style="brick.jpg", tileable=True, scales=1, style_loss=args.style_loss)
    for batch in args.batches:
        try:
            milliseconds = step_milliseconds(
                optimizer_step(recipe, device, batch=batch), device, args.warmup, args.repeats
            )
            rows.append((batch, 1000 * batch / milliseconds))
        except torch.OutOfMemoryError:
            rows.append((batch, float("nan")))
        print(f"(b) batch {batch}: {rows[-1][1]:.0f} image-evaluations/s", flush=True)
    return rows


def peak_memory(args, device: torch.device) -> list[tuple[int, float, float]]:
    rows = []
    for size in args.sizes:
        recipe = texture_recipe(size, steps=args.memory_steps, style_loss=args.style_loss)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        try:
            texsynth.synthesize(recipe, device=device)
            peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else float("nan")
        except torch.OutOfMemoryError:
            peak = float("nan")
        seconds = time.perf_counter() - start
        rows.append((size, peak, seconds))
        print(
            f"(c) {size} px: peak {peak:.0f} MiB, {peak / (size * size / 1e6):.0f} MiB/MP, {seconds:.1f} s", flush=True
        )
    return rows


def precision_agreement(args, device: torch.device) -> dict[str, float]:
    measure = Measure()
    path = IMAGES / "starry_night.jpg"
    grams = measure.grams([load_image(path, style_image_size(path, 1.0, args.size))])
    images = {}
    for precision in ("fp32", "bf16"):
        recipe = texture_recipe(args.size, precision=precision, steps=args.agreement_steps, style_loss=args.style_loss)
        images[precision] = texsynth.synthesize(recipe, device=device).image
        save_image(images[precision], args.out / f"starry-{args.size}-{precision}.png")
    result = {f"Gram distance, {p}": measure.style_distance(image, grams) for p, image in images.items()}
    result["mean |bf16 - fp32| pixel"] = float((images["bf16"] - images["fp32"]).abs().mean())
    for name, value in result.items():
        print(f"(d) {name}: {value:.4f}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", type=int, default=512, help="long side for (a) and (d)")
    parser.add_argument("--tile-size", type=int, default=256)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16, 32, 64])
    parser.add_argument("--style-loss", default="auto", help="style_loss of the textures in (b), (c), (d)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1024, 2048, 4096], help="long sides for (c)")
    parser.add_argument("--memory-steps", type=int, default=40)
    parser.add_argument("--agreement-steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--skip", nargs="*", default=[], choices=["a", "b", "c", "d"])
    parser.add_argument("--out", type=Path, default=Path("out/engine"))
    args = parser.parse_args()
    device = texsynth.pick_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"

    settings = engine_settings(args, device) if "a" not in args.skip else []
    tiles = batched_tiles(args, device) if "b" not in args.skip else []
    memory = peak_memory(args, device) if "c" not in args.skip else []
    agreement = precision_agreement(args, device) if "d" not in args.skip else {}

    print(f"\ntexsynth engine benchmark, {datetime.date.today()}, {name}, torch {torch.__version__}")
    if settings:
        print(f"(a) Gram + content through relu5_1, {args.size} px, one evaluation + L-BFGS update")
        fastest_plain = settings[0][1]
        for label, milliseconds in settings:
            print(f"    {label:<34}{milliseconds:>8.2f} ms   {fastest_plain / milliseconds:>5.2f}x vs fp32")
    if tiles:
        print(
            f"(b) {args.tile_size} px tileable brick tiles, style_loss {args.style_loss}, image-evaluations per second"
        )
        for batch, rate in tiles:
            print(f"    batch {batch:<28}{rate:>8.0f}   {rate / tiles[0][1]:>5.2f}x vs batch 1")
    if memory:
        print(f"(c) peak memory of a whole texture run ({args.memory_steps} steps, coarse-to-fine)")
        for size, peak, seconds in memory:
            megapixels = size * size / 1e6
            print(
                f"    {size} px ({megapixels:.1f} MP){'':<16}{peak:>8.0f} MiB  "
                f"{peak / megapixels:>6.0f} MiB/MP  {seconds:.1f} s"
            )
    if agreement:
        print(f"(d) bf16 vs fp32, Starry Night texture, {args.size} px, {args.agreement_steps} steps")
        for label, value in agreement.items():
            print(f"    {label:<34}{value:>8.4f}")


if __name__ == "__main__":
    main()
