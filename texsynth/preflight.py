"""Sizes checked before a run: the output at the content image's aspect, and each style image at every scale.

A recipe can be valid field by field and still fail an hour in: a content image
of 5000×10 px makes a 64 px output 1 px high, and a style image shrunk by
``scale: 0.1`` (or a 1×5000 one) reaches the deepest VGG layer with no pixels
left, which the network reports as a RuntimeError. Both follow from the image
headers and the scale plan alone, so they are checked when the recipe is
(``texsynth validate`` too), with the field and the image named.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .io import image_size
from .scales import auto_scale_count, plan_scales

if TYPE_CHECKING:
    from .recipe import Recipe


def output_size(recipe: Recipe) -> tuple[int, int]:
    """(width, height) of the recipe's output: ``size``, at the content image's aspect for one number."""
    content_size = image_size(recipe.content.image) if recipe.content is not None else None
    return recipe.output_size(content_size)


def output_problem(recipe: Recipe, width: int, height: int) -> str | None:
    """Why a width×height output is too small for the recipe's deepest layer, as ``size: ...``, or None."""
    if min(width, height) >= recipe.min_side:
        return None
    because = ""
    if recipe.content is not None and not isinstance(recipe.size, tuple):
        content_width, content_height = image_size(recipe.content.image)
        because = (
            f" (size {recipe.size} is the long side, and the content image {recipe.content.image} "
            f"is {content_width}x{content_height})"
        )
    return (
        f"size: the output would be {width}x{height} px{because}; {recipe.deepest_layer} needs "
        f"at least {recipe.min_side} px per side"
    )


def resized_style(size: tuple[int, int], scale: float, output_long_side: int) -> tuple[int, int]:
    """The size a style image of ``size`` is resized to: its long side ``scale`` × the output's, same aspect."""
    width, height = size
    factor = scale * output_long_side / max(width, height)
    return (max(1, round(width * factor)), max(1, round(height * factor)))


def size_problem(recipe: Recipe) -> str | None:
    """The first size that cannot work, as ``field: what is wrong``, or None.

    Each style image is resized relative to each scale of the pyramid, so it is
    smallest at the coarsest; every pooling before the deepest layer halves it,
    and a side must keep at least one pixel to the end.
    """
    width, height = output_size(recipe)
    problem = output_problem(recipe, width, height)
    if problem:
        return problem
    count = auto_scale_count(max(width, height)) if recipe.scales == "auto" else recipe.scales
    plan = plan_scales(width, height, recipe.steps, count, min_side=recipe.min_side, multiple=recipe.tile_multiple)
    coarsest = min(plan, key=lambda scale: max(scale.width, scale.height))
    long_side = max(coarsest.width, coarsest.height)
    needed = recipe.tile_multiple  # 2 ** the poolings before the deepest layer
    for index, style in enumerate(recipe.styles):
        original = image_size(style.image)
        resized = resized_style(original, style.scale, long_side)
        if min(resized) < needed:
            field = f"styles[{index}].scale" if style.scale != 1 else f"styles[{index}].image"
            return (
                f"{field}: the style image {style.image} ({original[0]}x{original[1]}) would be "
                f"{resized[0]}x{resized[1]} px at scale {style.scale:g} of the {long_side} px "
                f"{'coarsest scale' if len(plan) > 1 else 'output'}; {recipe.deepest_layer} needs at least "
                f"{needed} px per side (a larger scale or size, or a style image less thin)"
            )
    return None
