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
from .scales import SINGLE_SCALE_UP_TO, Scale, auto_scale_count, plan_scales

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


def scale_plan(recipe: Recipe, width: int, height: int) -> list[Scale]:
    """The recipe's coarse-to-fine pyramid for a width×height output, coarsest first.

    A texture up to 256 px gives every scale the same number of steps: its
    finest scale makes the detail, and the halving split (most steps coarse)
    left a 256 px brick texture 35% further from its style than one scale did.
    Larger outputs keep the halving split, where full-size steps are what a run
    costs (measured on the GPU before this split existed; unmeasured there since).
    ``scales: auto`` leaves out coarse scales at which a style image would be
    too small for the deepest layer; a number of scales is taken as given (and
    :func:`size_problem` reports what does not fit).
    """
    texture = recipe.content is None
    even = texture and max(width, height) <= SINGLE_SCALE_UP_TO

    def plan(count: int) -> list[Scale]:
        return plan_scales(
            width, height, recipe.steps, count, min_side=recipe.min_side, multiple=recipe.tile_multiple, even=even
        )

    if recipe.scales != "auto":
        return plan(recipe.scales)
    count = auto_scale_count(max(width, height), texture=texture)
    originals = _style_sizes(recipe)
    while count > 1 and _small_style(recipe, _long_side(plan(count)[0]), originals) is not None:
        count -= 1
    return plan(count)


def _long_side(scale: Scale) -> int:
    return max(scale.width, scale.height)


def _style_side_needed(recipe: Recipe) -> int:
    """Pixels a style image's short side needs so the deepest layer sees it.

    Every pooling before that layer halves it and a side must keep one pixel;
    a tile's style images are mirror-padded (targets.STYLE_PADDING), and a
    mirror needs two.
    """
    return recipe.tile_multiple * (2 if recipe.tileable else 1)


def _style_sizes(recipe: Recipe) -> list[tuple[int, int]]:
    """Each style image's (width, height), from its header."""
    return [image_size(style.image) for style in recipe.styles]


def _small_style(
    recipe: Recipe, long_side: int, originals: list[tuple[int, int]]
) -> tuple[int, tuple[int, int], tuple[int, int]] | None:
    """(index, original size, resized size) of the first style image too small at ``long_side``, or None."""
    for index, (style, original) in enumerate(zip(recipe.styles, originals)):
        resized = resized_style(original, style.scale, long_side)
        if min(resized) < _style_side_needed(recipe):
            return index, original, resized
    return None


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
    plan = scale_plan(recipe, width, height)
    long_side = _long_side(plan[0])
    small = _small_style(recipe, long_side, _style_sizes(recipe))
    if small is None:
        return None
    index, original, resized = small
    style = recipe.styles[index]
    field = f"styles[{index}].scale" if style.scale != 1 else f"styles[{index}].image"
    return (
        f"{field}: the style image {style.image} ({original[0]}x{original[1]}) would be "
        f"{resized[0]}x{resized[1]} px at scale {style.scale:g} of the {long_side} px "
        f"{'coarsest scale' if len(plan) > 1 else 'output'}; {recipe.deepest_layer} needs at least "
        f"{_style_side_needed(recipe)} px per side (a larger scale or size, or a style image less thin)"
    )
