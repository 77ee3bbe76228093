"""The Python API: a :class:`Recipe` in, an image out.

``synthesize`` runs a recipe and returns the image as a tensor; ``render`` also
writes it, atomically, with the recipe embedded. Both take an explicit device
(``pick_device`` chooses one the way the CLI does) and report through an
optional ``on_step`` callback, so they work the same without the CLI.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from . import __version__
from .errors import TexsynthError, located
from .features import VGGFeatures
from .graph import LossGraph, compile_graph, content_targets, style_features
from .io import image_size, load_image, save_image, writable_problem
from .optimize import Objective, Progress, optimize
from .colour import COLOUR_CONTROLS, KeepStyleColours
from .initial import StartInputs, mean_colour, starting_image
from .recipe import Optimizer, Precision, Recipe, StyleLoss
from .scales import auto_scale_count, plan_scales, upsample

ProgressCallback = Callable[[Progress], None]


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
    kind = requested.split(":")[0]
    available = {
        "cpu": True,
        "cuda": torch.cuda.is_available(),
        "mps": torch.backends.mps.is_available(),
    }
    if kind not in available:
        raise TexsynthError(f"--device: unknown device {requested!r}; use cpu, cuda or mps")
    if not available[kind]:
        raise TexsynthError(f"--device: {kind} is not available on this machine")
    return torch.device(requested)


def output_size(recipe: Recipe) -> tuple[int, int]:
    """(width, height) of the recipe's output, checked against the deepest layer's minimum."""
    content_size = image_size(recipe.content.image) if recipe.content is not None else None
    width, height = recipe.output_size(content_size)
    if min(width, height) < recipe.min_side:
        raise TexsynthError(
            f"size: the output would be {width}x{height} px; {recipe.deepest_layer} needs "
            f"at least {recipe.min_side} px per side"
        )
    return width, height


def make_extractor(recipe: Recipe, device: torch.device) -> VGGFeatures:
    """VGG19 for ``recipe`` on ``device``, with that device's fast settings.

    CUDA: channels_last, bf16 convolutions (unless ``precision: fp32``), TF32
    convolutions under ``fp32`` and cuDNN autotuning. Matrix products stay in
    full fp32: they are the Gram matrices and the optimizer's inner products
    (sᵢ·yⱼ spans many orders of magnitude), where TF32's 10-bit mantissa would
    show. With bf16 convolutions TF32 has little left to speed up (README,
    Performance: engine settings).
    """
    cuda = device.type == "cuda"
    bf16 = recipe.precision is Precision.BF16 or (recipe.precision is Precision.AUTO and cuda)
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = True
    return VGGFeatures(
        recipe.layers,
        weights=recipe.weights,
        pooling=recipe.pooling.value,
        channels_last=cuda,
        autocast=torch.bfloat16 if bf16 else None,
    ).to(device)


def objective(stage: Stage, extractor: VGGFeatures, padding: str, device: torch.device) -> Objective:
    """Named loss terms of an image batch. On the CPU each item is evaluated alone: CPU
    convolutions and reductions pick kernels and split work by batch size, so only
    that keeps a tile bit-identical whatever batch it was made in."""

    def evaluate(batch: Tensor) -> dict[str, Tensor]:
        return stage.graph(extractor(batch, padding=padding))

    if device.type != "cpu":
        return evaluate

    def one_at_a_time(batch: Tensor) -> dict[str, Tensor]:
        items = []
        with stage.graph.repeated_draws() as rewind:
            for i in range(batch.shape[0]):
                rewind()
                items.append(evaluate(batch[i : i + 1]))
        return {name: torch.cat([item[name] for item in items]) for name in items[0]}

    return one_at_a_time


#: Padding for style images. A tile is run as a torus and has no edges, while a
#: zero-padded style image's Grams carry its edges (at 96 px, relu5_1 is 6×6 and
#: mostly edge); the tile cannot match those and converged 5× slower. Mirror
#: padding gives the style image no edge of its own without pretending it is
#: periodic.
STYLE_PADDING = {False: "zeros", True: "reflect"}


@dataclass(frozen=True)
class Stage:
    """One scale of a run: its loss graph and the inputs at that size, in the optimizer's colour space."""

    graph: LossGraph
    colour: KeepStyleColours
    content: Tensor | None  # (1, 3, H, W) on the CPU, prepared by ``colour``
    style_mean: Tensor  # (3,) the blend's mean colour


def compile_at(recipe: Recipe, extractor: VGGFeatures, width: int, height: int) -> Stage:
    """Targets for an output of width×height, computed once, compiled into a loss graph."""
    device = next(extractor.parameters()).device
    colour = _colour_control(recipe, width, height)
    content = colour.content
    styles = [
        colour.style(load_image(s.image, style_image_size(s.image, s.scale, max(width, height)))) for s in recipe.styles
    ]
    weights = [s.weight for s in recipe.styles]
    style = style_features(
        extractor, [s.to(device) for s in styles], list(recipe.style_layers), padding=STYLE_PADDING[recipe.tileable]
    )
    content_features = None
    if content is not None and recipe.content is not None:
        content = colour.working(content)
        content_features = content_targets(extractor, content.to(device), list(recipe.content.layers))
    masks = [None if s.mask is None else load_mask(s.mask, (width, height), index) for index, s in enumerate(recipe.styles)]
    return Stage(
        graph=compile_graph(recipe, style, content_features, masks).to(device),
        colour=colour,
        content=content,
        style_mean=mean_colour(styles, weights),
    )


def load_mask(path: Path, size: tuple[int, int], index: int) -> Tensor:
    """A style's mask as (1, 1, H, W) in [0, 1] at ``size``: the image's grey level (white = the style applies)."""
    mask = load_image(path, size).mean(dim=1, keepdim=True)
    if not mask.max() > 0:
        raise TexsynthError(f"styles[{index}].mask: {path} is black everywhere, so the style would apply nowhere")
    return mask


def _colour_control(recipe: Recipe, width: int, height: int) -> KeepStyleColours:
    """Colour preservation bound to the content at this size; it prepares the optimizer's inputs."""
    content = load_image(recipe.content.image, (width, height)) if recipe.content is not None else None
    return COLOUR_CONTROLS[recipe.preserve_colour](content)


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
    count = auto_scale_count(max(width, height)) if recipe.scales == "auto" else recipe.scales
    plan = plan_scales(width, height, recipe.steps, count, min_side=recipe.min_side, multiple=recipe.tile_multiple)
    padding = "circular" if recipe.tileable else "zeros"
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
            objective(stage, extractor, padding, device),
            steps=scale.steps,
            optimizer=recipe.optimizer,
            learning_rate=recipe.effective_learning_rate,
            on_step=_finishing(_over_pyramid(on_step, done, recipe.steps, index, len(plan)), stage.colour.finish),
            cuda_graph=cuda_graph,
        )
        image, done, seconds = result.image, done + result.steps, seconds + result.seconds
        if result.interrupted:
            break
    # 4. Back to the output's size (after an interrupt at a coarse scale) and colours.
    if image.shape[-2:] != (height, width):
        stage = dataclasses.replace(stage, colour=_colour_control(recipe, width, height))
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
    on_step: ProgressCallback | None, offset: int, total: int, scale: int, scales: int
) -> ProgressCallback | None:
    if on_step is None:
        return None
    return lambda progress: on_step(
        replace(progress, step=offset + progress.step, steps=total, scale=scale, scales=scales)
    )


def _finishing(on_step: ProgressCallback | None, finish: Callable[[Tensor], Tensor]) -> ProgressCallback | None:
    """``on_step`` seeing each step's image in output colours (the optimizer may work in others)."""
    if on_step is None:
        return None

    def report(progress: Progress) -> None:
        image = progress.image
        on_step(replace(progress, image=finish(image.detach()) if image is not None else None))

    return report


def style_image_size(path: Path, scale: float, output_long_side: int) -> tuple[int, int]:
    """Style image size whose long side is ``scale`` × the output's, keeping its aspect."""
    width, height = image_size(path)
    factor = scale * output_long_side / max(width, height)
    return (max(1, round(width * factor)), max(1, round(height * factor)))


@dataclass(frozen=True)
class Origin:
    """Where a recipe's files came from when not from the user's own folders (a bundle).

    Paths under ``root`` (a temporary folder) are recorded relative to it, and
    ``extra`` is added to the metadata, so an output says how to find its inputs again.
    """

    root: Path
    extra: dict[str, Any]


def metadata(recipe: Recipe, synthesis: Synthesis, origin: Origin | None = None) -> dict[str, Any]:
    """What every output carries: the effective recipe, its seed, versions and input hashes."""
    # The output path is left out: it says where this copy went, not how to make
    # it, and two runs that differ only there must give identical files.
    embedded = {key: value for key, value in recipe.to_dict().items() if key != "output"}
    inputs = {str(path): sha256(path) for _, path in recipe.input_images()}
    data = {
        "texsynth": __version__,
        "torch": torch.__version__,
        "device": synthesis.device,
        "seed": recipe.seed,
        "steps_done": synthesis.steps,
        "interrupted": synthesis.interrupted,
        "losses": synthesis.losses,
        "recipe": embedded,
        "inputs": inputs,
    }
    if origin is not None:
        data = {**_relative(data, origin.root), **origin.extra}
    return data


def _relative(data: Any, root: Path) -> Any:
    """``data`` with every path string under ``root`` (values and keys) made relative to it."""
    prefix = f"{root}/"
    if isinstance(data, str):
        return data[len(prefix):] if data.startswith(prefix) else data
    if isinstance(data, dict):
        return {_relative(key, root): _relative(value, root) for key, value in data.items()}
    if isinstance(data, list):
        return [_relative(item, root) for item in data]
    return data


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_output(recipe: Recipe, source: str = "recipe") -> Path:
    """The recipe's output path, after making sure it can be written (nothing is created)."""
    if recipe.output is None:
        raise TexsynthError(located(source, "output", "no output path; set output: or pass -o"))
    problem = writable_problem(recipe.output)
    if problem:
        raise TexsynthError(located(source, "output", problem))
    return recipe.output


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
    path = check_output(recipe, source)
    synthesis = synthesize(recipe, device=device, on_step=on_step)
    save_image(synthesis.image, path, metadata(recipe, synthesis, origin))
    return Rendered(path=path, synthesis=synthesis)
