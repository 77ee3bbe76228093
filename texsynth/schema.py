"""The recipe's JSON Schema (draft-07), for editors that complete and check YAML.

Generated from the :class:`~texsynth.recipe.Recipe` model, so it cannot drift
from what the loader accepts, then made friendlier for editors: a one-line
description on every field (shown on hover), layer names as a list to
complete from, and plain draft-07 keywords, which the VS Code YAML extension
(yaml-language-server) understands fully. A few checks only the loader makes
(image files exist, the output size fits the deepest layer) stay there.
"""

from __future__ import annotations

from typing import Any

from .features import FEATURE_LAYERS
from .recipe import MAX_SIDE, MIN_SIDE, RECIPE_VERSION, Recipe

SCHEMA_DRAFT = "http://json-schema.org/draft-07/schema#"

#: What each field means, as an editor shows it; keys are dotted paths into the recipe.
DESCRIPTIONS: dict[str, str] = {
    "version": f"Recipe format version; this texsynth reads versions up to {RECIPE_VERSION}.",
    "size": "Output long side in px, or [width, height]. The short side follows the content image's aspect.",
    "steps": "Optimizer iterations.",
    "seed": "Seed of the starting noise: same recipe, seed and device give the same image.",
    "styles": "One or more style images; their Gram targets are averaged by weight.",
    "styles.image": "Style image path, relative to the recipe file.",
    "styles.weight": "Share of this style in the blend (weights are normalized to sum to 1).",
    "styles.scale": "Style image long side relative to the output's: 2 makes its features twice as large, 0.5 half.",
    "styles.mask": "Where this style applies: an image, white = here, black = not; resized to the output. "
    "Masked styles are matched region by region instead of blended (Gram loss only).",
    "style_layers": "VGG19 layers whose Gram matrices must match, with weights (normalized).",
    "style_weight": "Weight of the style term in the total loss.",
    "content": "A content image: turns texture synthesis into style transfer.",
    "content.image": "Content image path, relative to the recipe file.",
    "content.weight": "How strongly the content is kept (1 balances it with style_weight 1).",
    "content.layers": "VGG19 layers whose activations must match the content's, with weights.",
    "optimizer": "lbfgs (fewer steps, default) or adam.",
    "learning_rate": "Step size; default 1.0 for L-BFGS, 0.02 for Adam.",
    "init": "Starting image: noise, content, image (init_image) or style_mean. Default: content if any, else noise.",
    "init_image": "Image to start from (implies init: image), resized to the output.",
    "preserve_colour": "Keep the content's colours: none, luminance (luminance-only transfer) or "
    "histogram (style images recoloured to the content's palette).",
    "tv_weight": "Total-variation weight: smooths single-pixel noise.",
    "pooling": "Pooling inside VGG19: max or avg.",
    "output": "Output image (.png, .jpg, .webp), relative to the recipe file. Default: out/<recipe name>.png.",
    "weights": "A torchvision vgg19 state dict to use instead of the shipped Caffe VGG19 weights.",
    "scales": (
        "Coarse-to-fine pyramid: auto (textures to 256 px from ~64 px, larger images from ~128 px) or a count; 1: off."
    ),
    "tileable": "Make the output wrap around seamlessly, so it repeats in a grid without a seam.",
    "style_loss": "How features are compared with the style's: gram (Gatys et al.), sliced_wasserstein "
    "(Heitz et al. 2021: whole feature distributions), gram+sliced_wasserstein, or auto (the default: "
    "gram+sliced_wasserstein for textures, gram for style transfers).",
    "precision": (
        "Convolution arithmetic: auto (bf16 on CUDA and on CPUs with native bf16, fp32 elsewhere), fp32 or bf16."
    ),
}


def recipe_schema() -> dict[str, Any]:
    """The JSON Schema of a recipe file."""
    schema = Recipe.model_json_schema(ref_template="#/definitions/{model}")
    definitions = schema.pop("$defs", {})
    layer_names = {"type": "object", "propertyNames": {"enum": list(FEATURE_LAYERS)},
                   "additionalProperties": {"type": "number", "exclusiveMinimum": 0}}
    properties = schema["properties"]
    properties["version"].update(minimum=1, maximum=RECIPE_VERSION)
    side = {"type": "integer", "minimum": MIN_SIDE, "maximum": MAX_SIDE}
    properties["size"] = {
        "default": 256,
        "anyOf": [side, {"type": "array", "items": side, "minItems": 2, "maxItems": 2}],
    }
    properties["style_layers"].update(layer_names)
    definitions["Content"]["properties"]["layers"].update(layer_names)
    _describe(properties, "", definitions)
    return {
        "$schema": SCHEMA_DRAFT,
        "title": "texsynth recipe",
        "description": "A texsynth recipe: texture synthesis or style transfer over VGG19 (texsynth schema).",
        **{key: value for key, value in schema.items() if key not in ("title", "description")},
        "definitions": definitions,
    }


def _describe(properties: dict[str, Any], prefix: str, definitions: dict[str, Any]) -> None:
    for name, field in properties.items():
        path = f"{prefix}{name}"
        field.pop("title", None)
        field.pop("format", None)  # pydantic's "path" is no standard format; editors would flag it
        for option in field.get("anyOf", []):
            option.pop("format", None)
        ref = _ref_of(field)
        if "$ref" in field:
            # Draft-07 ignores every keyword beside a $ref, the description included.
            field["allOf"] = [{"$ref": field.pop("$ref")}]
        if path in DESCRIPTIONS:
            field["description"] = DESCRIPTIONS[path]
        if ref is not None:
            nested = definitions[ref]
            nested.pop("title", None)
            if "properties" in nested:
                _describe(nested["properties"], f"{path}.", definitions)


def _ref_of(field: dict[str, Any]) -> str | None:
    for candidate in (field, field.get("items", {}), *field.get("anyOf", [])):
        ref = candidate.get("$ref")
        if ref:
            return ref.rsplit("/", 1)[-1]
    return None
