"""The Python API: a :class:`Recipe` in, an image out.

``synthesize`` runs a recipe and returns the image as a tensor; ``render`` also
writes it, atomically, with the recipe embedded. Both take an explicit device
(``pick_device`` chooses one the way the CLI does) and report through an
optional ``on_step`` callback, so they work the same without the CLI.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from torch import Tensor

from . import preflight
from .bundle import Origin
from .errors import TexsynthError, located
from .files import input_clash
from .initial import StartInputs, starting_image
from .io import image_format, load_image, metadata_problem, save_image, writable_problem
from .messages import field_path
from .optimize import StepReport, optimize
from .provenance import output_metadata
from .recipe import Optimizer, Recipe, StyleLoss
from .scales import upsample
from .targets import (
    STYLE_PADDING,
    Stage,
    colour_control,
    compile_at,
    load_mask,
    make_extractor,
    objective,
    resolved_precision,
    style_image_size,
)

__all__ = [
    "Rendered",
    "Synthesis",
    "check_output",
    "device_problem",
    "input_fields",
    "output_size",
    "pick_device",
    "render",
    "resolved_precision",
    "synthesis_metadata",
    "synthesize",
    "use_cuda_graph",
    # Moved to targets.py; still importable from here, as they were.
    "STYLE_PADDING",
    "Stage",
    "colour_control",
    "compile_at",
    "load_mask",
    "make_extractor",
    "objective",
    "style_image_size",
]

ProgressCallback = Callable[[StepReport], None]


@dataclass(frozen=True)
class Synthesis:
    """What a run produced: images (B, 3, H, W) in [0, 1] on the CPU, one per seed, and how it went."""

    image: Tensor
    #: Final loss terms, the batch mean (for one image, its own).
    losses: dict[str, float]
    #: Final loss terms of each batch item.
    item_losses: tuple[dict[str, float], ...]
    steps: int
    interrupted: bool
    seconds: float
    device: str
    seeds: tuple[int, ...]
    #: What VGG19's convolutions ran in, "fp32" or "bf16" (``precision: auto`` depends on the machine).
    precision: str

    def item(self, index: int) -> Synthesis:
        """Batch item ``index`` on its own, as if it had been made alone."""
        return replace(
            self,
            image=self.image[index : index + 1],
            losses=self.item_losses[index],
            item_losses=(self.item_losses[index],),
            seeds=(self.seeds[index],),
        )


def pick_device(requested: str | None = None) -> torch.device:
    """``requested`` if it is usable, else CUDA when available, then Apple MPS, then the CPU."""
    if requested is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    problem = device_problem(requested)
    if problem:
        raise TexsynthError(f"device: {problem}")
    return torch.device(requested)


_DEVICE = re.compile(r"(cpu|cuda|mps)(?::(\d{1,3}))?")


def device_problem(requested: str) -> str | None:
    """Why ``requested`` (``cpu``, ``cuda``, ``cuda:1``, ``mps``) names no usable device here, or None."""
    match = _DEVICE.fullmatch(requested)
    if match is None:
        return f"unknown device {requested!r}; use cpu, cuda, cuda:N or mps"
    kind, index = match.group(1), match.group(2)
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not available[kind]:
        return f"{kind} is not available on this machine"
    if kind == "cuda" and index is not None and int(index) >= torch.cuda.device_count():
        return f"{requested!r}: this machine has {torch.cuda.device_count()} CUDA devices"
    return None


def output_size(recipe: Recipe) -> tuple[int, int]:
    """(width, height) of the recipe's output, checked against the deepest layer's minimum."""
    width, height = preflight.output_size(recipe)
    problem = preflight.output_problem(recipe, width, height)
    if problem:
        raise TexsynthError(problem)
    return width, height


def synthesize(
    recipe: Recipe,
    *,
    device: str | torch.device = "cpu",
    on_step: ProgressCallback | None = None,
    seeds: Sequence[int] | None = None,
) -> Synthesis:
    """Run ``recipe`` on ``device`` and return the image (one per seed; default: the recipe's seed).

    Texture synthesis (Gatys et al. 2015) when the recipe has no content image,
    style transfer (Gatys et al. 2016) when it has one. Large outputs go through
    a coarse-to-fine pyramid (``scales``); each scale's targets are computed
    once, and the loop evaluates only the generated images, all seeds together
    as one batch.
    """
    device = torch.device(device)
    seeds = tuple(seeds) if seeds is not None else (recipe.seed,)
    width, height = output_size(recipe)
    extractor = make_extractor(recipe, device)
    plan = preflight.scale_plan(recipe, width, height)
    cuda_graph = use_cuda_graph(recipe, device)

    image: Tensor | None = None
    done, seconds = 0, 0.0
    for index, scale in enumerate(plan):
        # 1. Targets for this scale: style images resized relative to it, content at its size.
        stage = compile_at(recipe, extractor, scale.width, scale.height)
        # 2. Start from the recipe's init at the coarsest scale, else from the last scale's result.
        if image is None:
            start = _start(recipe, stage, seeds, scale.width, scale.height)
        else:
            start = upsample(image, scale.width, scale.height, circular=recipe.tileable)
        # 3. Optimize; progress counts steps over the whole pyramid.
        result = optimize(
            start.to(device),
            objective(stage, extractor, recipe.padding, device),
            steps=scale.steps,
            optimizer=recipe.optimizer,
            learning_rate=recipe.effective_learning_rate,
            on_step=_finishing(
                _over_pyramid(on_step, done, seconds, recipe.steps, index, len(plan)), stage.colour.finish
            ),
            cuda_graph=cuda_graph,
        )
        image, done, seconds = result.image, done + result.steps, seconds + result.seconds
        if result.interrupted:
            break
    # 4. Back to the output's size (after an interrupt at a coarse scale) and colours.
    assert image is not None  # the plan has at least one scale
    if image.shape[-2:] != (height, width):
        stage = dataclasses.replace(stage, colour=colour_control(recipe, width, height))
    image = stage.colour.finish(upsample(image, width, height, circular=recipe.tileable))
    return Synthesis(
        image=image.detach().cpu(),
        losses={name: float(value.mean()) for name, value in result.losses.items()},
        item_losses=tuple(
            {name: float(value[i]) for name, value in result.losses.items()} for i in range(image.shape[0])
        ),
        steps=done,
        interrupted=result.interrupted,
        seconds=seconds,
        device=str(device),
        seeds=seeds,
        precision=extractor.precision,
    )


def use_cuda_graph(recipe: Recipe, device: torch.device) -> bool:
    """Whether the loop may replay its step as a CUDA graph (see :func:`texsynth.optimize.optimize`).

    Only for L-BFGS with the Gram loss: the sliced-Wasserstein loss draws new
    projections every step, which a replayed graph would freeze. Setting
    TEXSYNTH_CUDA_GRAPHS=0 turns it off.
    """
    return (
        device.type == "cuda"
        and recipe.optimizer is Optimizer.LBFGS
        and recipe.effective_style_loss is StyleLoss.GRAM
        and os.environ.get("TEXSYNTH_CUDA_GRAPHS", "1") != "0"
    )


def _start(recipe: Recipe, stage: Stage, seeds: Sequence[int], width: int, height: int) -> Tensor:
    """The starting batch, one image per seed, on the CPU."""
    given = load_image(recipe.init_image, (width, height)) if recipe.init_image is not None else None
    return torch.cat(
        [
            starting_image(
                recipe.effective_init,
                StartInputs(
                    shape=(1, 3, height, width),
                    seed=seed,
                    content=stage.content,
                    image=stage.colour.working(given) if given is not None else None,
                    style_mean=stage.style_mean,
                ),
            )
            for seed in seeds
        ]
    )


def _over_pyramid(
    on_step: ProgressCallback | None, offset: int, seconds: float, total: int, scale: int, scales: int
) -> ProgressCallback | None:
    """``on_step`` counting steps and seconds over the whole pyramid, not from the start of this scale."""
    if on_step is None:
        return None
    return lambda progress: on_step(
        replace(
            progress,
            step=offset + progress.step,
            steps=total,
            elapsed=seconds + progress.elapsed,
            scale=scale,
            scales=scales,
        )
    )


def _finishing(on_step: ProgressCallback | None, finish: Callable[[Tensor], Tensor]) -> ProgressCallback | None:
    """``on_step`` seeing each step's image in output colours (the optimizer may work in others)."""
    if on_step is None:
        return None

    def report(progress: StepReport) -> None:
        image = progress.image
        on_step(replace(progress, image=finish(image.detach()) if image is not None else None))

    return report


def check_output(recipe: Recipe, source: str = "recipe", origin: Origin | None = None) -> Path:
    """The recipe's output path, after making sure it can be written (nothing is created).

    It must be writable, must not be one of the recipe's inputs (the
    output-is-an-input rule), and a JPEG must have room for the provenance it
    will carry (EXIF holds 64 kB).
    """
    if recipe.output is None:
        raise TexsynthError(located(source, "output", "no output path; set output: or pass -o"))
    problem = (
        writable_problem(recipe.output)
        or input_clash(recipe.output, input_fields(recipe))
        or _metadata_problem(recipe, origin)
    )
    if problem:
        raise TexsynthError(located(source, "output", problem))
    return recipe.output


def input_fields(recipe: Recipe) -> list[tuple[str, Path]]:
    """(field as written in the recipe, path) of every image the recipe reads."""
    return [(field_path(loc), path) for loc, path in recipe.input_images()]


def _metadata_problem(recipe: Recipe, origin: Origin | None) -> str | None:
    """Whether the provenance fits the output's format (only a JPEG's is limited): the run's own
    figures are placeholders of their longest length."""
    assert recipe.output is not None
    if image_format(recipe.output) != "JPEG":
        return None
    losses = {name: -1.2345678901234567e-300 for name in ("style", "sliced", "content", "tv")}
    expected = output_metadata(
        recipe,
        device="cuda:00",
        precision="bf16",
        steps_done=recipe.steps,
        interrupted=False,
        losses=losses,
        origin=origin,
    )
    return metadata_problem(recipe.output, expected)


@dataclass(frozen=True)
class Rendered:
    path: Path
    synthesis: Synthesis


def render(
    recipe: Recipe,
    *,
    device: str | torch.device = "cpu",
    on_step: ProgressCallback | None = None,
    source: str = "recipe",
    origin: Origin | None = None,
) -> Rendered:
    """Run ``recipe`` and write its output image (also after Ctrl-C: the best image so far)."""
    path = check_output(recipe, source, origin)
    synthesis = synthesize(recipe, device=device, on_step=on_step)
    if not all(math.isfinite(value) for value in synthesis.losses.values()):
        # Every step was non-finite, so the "best" image is the starting noise: keep nothing.
        raise TexsynthError(
            located(
                source,
                None,
                f"the loss became NaN or infinite (after {synthesis.steps} steps); nothing was written. "
                "Weights whose values are far too large overflow this way",
            )
        )
    save_image(synthesis.image, path, synthesis_metadata(recipe, synthesis, origin))
    return Rendered(path=path, synthesis=synthesis)


def synthesis_metadata(recipe: Recipe, synthesis: Synthesis, origin: Origin | None = None) -> dict:
    """What an image made by ``synthesis`` carries (see :func:`texsynth.provenance.output_metadata`)."""
    return output_metadata(
        recipe,
        device=synthesis.device,
        precision=synthesis.precision,
        steps_done=synthesis.steps,
        interrupted=synthesis.interrupted,
        losses=synthesis.losses,
        origin=origin,
    )
