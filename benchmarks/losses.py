"""The style losses' own kernels, measured side by side in one run: sorting and the Gram product.

    python benchmarks/losses.py                      # the CPU, default texture at 256 px (about 3 minutes on 2 cores)
    python benchmarks/losses.py --device cuda
    python benchmarks/losses.py --size 64 --rounds 1 --steps 1     # a smoke run

(a) Sorting at the sliced-Wasserstein loss's shapes (projections × positions of
    a ``--size`` image at relu1_1 … relu5_1): ``torch.sort`` against
    ``texsynth.losses.sorting`` for the style's values alone and for the image's
    values with their gradient (sort, then sum, then backward).
    Then the Gram product F·Fᵀ and its gradient at the same layers, as texsynth
    differentiates it (one product) and as autograd does (two).
(b) Milliseconds per optimizer step of the default texture (brick, tileable,
    ``style_loss: auto`` = Gram + sliced Wasserstein) at ``--size``, with the
    loss internals as texsynth has them and with each change undone:
    ``torch.sort`` instead of texsynth's sorting, and autograd's two-product
    Gram backward instead of texsynth's one-product one. Then a 50/50 blend
    (Starry Night and The Scream) with the sliced-Wasserstein target drawn as
    an equal-mass sample of the mixture each step, as texsynth does, and with
    the exact mixture (every style position weighing its share: the pooled
    values need an arg-sort and a weighted cumulative sum).

The variants run interleaved, ``--rounds`` times ``--steps`` steps each, and
each prints its median, so a noisy machine slows all of them alike. There are
no timed assertions: it only measures and prints.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import texsynth  # noqa: E402
from engine import IMAGES, optimizer_step, synchronize  # noqa: E402  (benchmarks/engine.py)
from texsynth.features import downsampling  # noqa: E402
from texsynth.losses import gram, sliced, sorting  # noqa: E402

LAYERS = {"relu1_1": 64, "relu2_1": 128, "relu3_1": 256, "relu4_1": 512, "relu5_1": 512}


def torch_sort() -> contextlib.AbstractContextManager:
    """The sliced-Wasserstein loss sorting with torch.sort, as before texsynth.losses.sorting."""
    return mock.patch.multiple(
        sliced,
        sort_values=lambda values: values.sort(dim=-1).values,
        argsort=lambda values: values.sort(dim=-1, stable=True).indices,
        sort_with_gradient=lambda values: values.sort(dim=-1).values,
    )


def autograd_gram() -> contextlib.AbstractContextManager:
    """Gram matrices differentiated by autograd's generic product rule (two products)."""
    return mock.patch.object(gram, "_self_products", lambda flat: torch.bmm(flat, flat.transpose(1, 2)))


def exact_blend() -> contextlib.AbstractContextManager:
    """Blends matched against the exact mixture (every style position at its share) instead of a sample."""
    return mock.patch.object(
        sliced.SlicedWassersteinLoss, "_match_targets", lambda self, count, generator: (self.targets, self.shares)
    )


def milliseconds(run: Callable[[], None], device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    run()
    synchronize(device)
    return 1000 * (time.perf_counter() - start)


def interleaved(
    variants: dict[str, Callable[[], None]], device: torch.device, rounds: int, repeats: int
) -> dict[str, float]:
    """Median ms of each variant, the variants taking turns round by round."""
    times: dict[str, list[float]] = {label: [] for label in variants}
    for run in variants.values():
        run()  # warm-up
    for _ in range(rounds):
        for label, run in variants.items():
            times[label] += [milliseconds(run, device) for _ in range(repeats)]
    return {label: statistics.median(values) for label, values in times.items()}


def sorting_part(args, device: torch.device) -> None:
    print(f"\n(a) sorting projections of a {args.size} px image, ms (median of {args.rounds} rounds)")
    print(
        f"    {'layer':<9}{'shape':>14}{'values: torch':>16}{'texsynth':>10}{'ratio':>8}"
        f"{'with gradient: torch':>23}{'texsynth':>10}{'ratio':>8}"
    )
    generator = torch.Generator().manual_seed(0)
    for layer, channels in LAYERS.items():
        side = max(1, args.size // 2 ** downsampling(layer))
        values = torch.randn((1, channels, side * side), generator=generator).to(device)
        values.relu_()  # ReLU features project to many exact zeros: ties, as in the loss
        weights = torch.randn_like(values)

        def backward(sort: Callable) -> Callable[[], None]:
            def run() -> None:
                leaf = values.clone().requires_grad_(True)
                (sort(leaf) * weights).sum().backward()

            return run

        result = interleaved(
            {
                "values torch": lambda: values.sort(dim=-1),
                "values texsynth": lambda: sorting.sort_values(values),
                "gradient torch": backward(lambda v: v.sort(dim=-1).values),
                "gradient texsynth": backward(sorting.sort_with_gradient),
            },
            device,
            args.rounds,
            3,
        )
        print(
            f"    {layer:<9}{f'{channels}x{side * side}':>14}{result['values torch']:>16.1f}"
            f"{result['values texsynth']:>10.1f}{result['values torch'] / result['values texsynth']:>7.2f}x"
            f"{result['gradient torch']:>23.1f}{result['gradient texsynth']:>10.1f}"
            f"{result['gradient torch'] / result['gradient texsynth']:>7.2f}x",
            flush=True,
        )


def gram_part(args, device: torch.device) -> None:
    print(f"\n    Gram product and its gradient, ms: {'autograd':>10}{'texsynth':>10}{'ratio':>8}")
    generator = torch.Generator().manual_seed(1)
    for layer, channels in LAYERS.items():
        side = max(1, args.size // 2 ** downsampling(layer))
        features = torch.randn((1, channels, side * side), generator=generator).to(device)

        def forward_backward(product: Callable) -> Callable[[], None]:
            def run() -> None:
                leaf = features.clone().requires_grad_(True)
                product(leaf).square().sum().backward()

            return run

        result = interleaved(
            {
                "autograd": forward_backward(lambda flat: torch.bmm(flat, flat.transpose(1, 2))),
                "texsynth": forward_backward(gram._self_products),
            },
            device,
            args.rounds,
            3,
        )
        print(
            f"    {layer:<9}{f'{channels}x{side * side}':>14}{'':>11}{result['autograd']:>10.1f}"
            f"{result['texsynth']:>10.1f}{result['autograd'] / result['texsynth']:>7.2f}x",
            flush=True,
        )


def step_part(args, device: torch.device) -> None:
    def texture(**fields) -> texsynth.Recipe:
        return texsynth.parse_recipe({"size": args.size, "scales": 1, **fields})

    def step_with(recipe: texsynth.Recipe, *contexts: Callable[[], contextlib.AbstractContextManager]):
        step = optimizer_step(recipe, device)

        def run() -> None:
            with contextlib.ExitStack() as stack:
                for context in contexts:
                    stack.enter_context(context())
                step()

        return run

    brick = texture(tileable=True, styles=[{"image": str(IMAGES / "brick.jpg")}])
    blend = texture(styles=[{"image": str(IMAGES / name)} for name in ("starry_night.jpg", "the_scream.jpg")])
    variants = {
        "texsynth": step_with(brick),
        "  with torch.sort": step_with(brick, torch_sort),
        "  with autograd's Gram backward": step_with(brick, autograd_gram),
        "  with both (before)": step_with(brick, torch_sort, autograd_gram),
        "blend, texsynth": step_with(blend),
        "  matched to the exact mixture": step_with(blend, exact_blend),
    }
    result = interleaved(variants, device, args.rounds, args.steps)
    print(f"\n(b) ms per optimizer step, style_loss auto (Gram + sliced Wasserstein), {args.size} px")
    print("    brick, tileable:")
    for label, value in result.items():
        if label.startswith("blend"):
            print("    Starry Night + The Scream, 50/50:")
        reference = result["blend, texsynth" if "blend" in label or "mixture" in label else "texsynth"]
        print(f"    {label:<34}{value:>9.1f} ms   {value / reference:>5.2f}x texsynth's time")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--steps", type=int, default=1, help="steps per variant and round in (b)")
    args = parser.parse_args()
    device = texsynth.pick_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"texsynth style-loss kernels, {datetime.date.today()}, {name}, torch {torch.__version__}")
    sorting_part(args, device)
    gram_part(args, device)
    step_part(args, device)


if __name__ == "__main__":
    main()
