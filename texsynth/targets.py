"""What a recipe is compared against at one size: the feature extractor, style and content targets, masks.

Both paths build on this: the per-image optimizer (``api.synthesize``) compiles
a :class:`Stage` per scale of its pyramid, and the feed-forward path trains
against the same targets. Targets are computed once per size; style images are
resized relative to the output (``styles[].scale``) and prepared by the
recipe's colour control first.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from .colour import COLOUR_CONTROLS, ColourControl
from .errors import TexsynthError
from .features import VGGFeatures
from .graph import LossGraph, compile_graph, content_targets, style_features
from .hardware import cpu_has_native_bf16
from .initial import mean_colour
from .io import image_size, load_image
from .optimize import Objective
from .preflight import resized_style
from .recipe import Precision, Recipe


def resolved_precision(precision: Precision, device: torch.device) -> str:
    """``"bf16"`` or ``"fp32"``: what ``precision`` means for VGG19's convolutions on ``device``.

    ``auto`` is bf16 on CUDA and on a CPU that multiplies bf16 natively
    (:func:`texsynth.hardware.cpu_has_native_bf16`), fp32 elsewhere.
    """
    if precision is Precision.AUTO:
        native = device.type == "cuda" or (device.type == "cpu" and cpu_has_native_bf16())
        return "bf16" if native else "fp32"
    return precision.value


def make_extractor(recipe: Recipe, device: torch.device) -> VGGFeatures:
    """VGG19 for ``recipe`` on ``device``, with that device's fast settings.

    CUDA: channels_last, bf16 convolutions (unless ``precision: fp32``), TF32
    convolutions under ``fp32`` and cuDNN autotuning. Matrix products stay in
    full fp32: they are the Gram matrices and the optimizer's inner products
    (sᵢ·yⱼ spans many orders of magnitude), where TF32's 10-bit mantissa would
    show. With bf16 convolutions TF32 has little left to speed up (README,
    Performance: engine settings).

    CPU: channels_last too (oneDNN's convolutions then skip a layout
    conversion each way: VGG19's pass 1.1-1.2x faster on the 2-core CPU at
    64-256 px), bf16 only where the CPU has it natively.
    """
    cuda = device.type == "cuda"
    bf16 = resolved_precision(recipe.precision, device) == "bf16"
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = True
    return VGGFeatures(
        recipe.layers,
        weights=recipe.weights,
        pooling=recipe.pooling.value,
        channels_last=device.type in ("cuda", "cpu"),
        autocast=torch.bfloat16 if bf16 else None,
    ).to(device)


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
    colour: ColourControl
    content: Tensor | None  # (1, 3, H, W) on the CPU, prepared by ``colour``
    style_mean: Tensor  # (3,) the blend's mean colour


def compile_at(recipe: Recipe, extractor: VGGFeatures, width: int, height: int) -> Stage:
    """Targets for an output of width×height, computed once, compiled into a loss graph."""
    device = next(extractor.parameters()).device
    colour = colour_control(recipe, width, height)
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
    masks = [
        None if s.mask is None else load_mask(s.mask, (width, height), index) for index, s in enumerate(recipe.styles)
    ]
    return Stage(
        graph=compile_graph(recipe, style, content_features, masks).to(device),
        colour=colour,
        content=content,
        style_mean=mean_colour(styles, weights),
    )


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


def load_mask(path: Path, size: tuple[int, int], index: int) -> Tensor:
    """A style's mask as (1, 1, H, W) in [0, 1] at ``size``: the image's grey level (white = the style applies)."""
    mask = load_image(path, size).mean(dim=1, keepdim=True)
    if not mask.max() > 0:
        raise TexsynthError(f"styles[{index}].mask: {path} is black everywhere, so the style would apply nowhere")
    return mask


def colour_control(recipe: Recipe, width: int, height: int) -> ColourControl:
    """Colour preservation bound to the content at this size; it prepares the optimizer's inputs."""
    content = load_image(recipe.content.image, (width, height)) if recipe.content is not None else None
    return COLOUR_CONTROLS[recipe.preserve_colour](content)


def style_image_size(path: Path, scale: float, output_long_side: int) -> tuple[int, int]:
    """Style image size whose long side is ``scale`` × the output's, keeping its aspect."""
    return resized_style(image_size(path), scale, output_long_side)
