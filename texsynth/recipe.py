"""The recipe: a typed, frozen description of one synthesis, parsed from YAML once.

Everything a user can set lives here with its default, so the rest of texsynth
takes a :class:`Recipe` and never looks at dicts, YAML or command-line objects.
Relative paths inside a recipe resolve against the recipe file's folder, so a
folder of recipe + images can be zipped and shared. Problems are reported as
``file: field: what is wrong`` (with the YAML line where it is known).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from .errors import TexsynthError, located
from .features import FEATURE_LAYERS, deepest_layer, downsampling
from .messages import describe, drop_redundant, kind, locate

#: The recipe format this texsynth reads and writes.
RECIPE_VERSION = 1
#: Largest output side in pixels; beyond this VGG activations do not fit in any GPU.
MAX_SIDE = 8192
#: Smallest output side: relu5_1 sees it halved four times.
MIN_SIDE = 16
#: Image types an output path may have.
OUTPUT_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")

DEFAULT_STYLE_LAYERS: dict[str, float] = {
    "relu1_1": 1.0,
    "relu2_1": 1.0,
    "relu3_1": 1.0,
    "relu4_1": 1.0,
    "relu5_1": 1.0,
}
DEFAULT_CONTENT_LAYERS: dict[str, float] = {"relu4_2": 1.0}


class Optimizer(str, Enum):
    LBFGS = "lbfgs"
    ADAM = "adam"


class Init(str, Enum):
    NOISE = "noise"
    CONTENT = "content"


class Pooling(str, Enum):
    MAX = "max"
    AVG = "avg"


#: Learning rate when a recipe sets none: L-BFGS takes full quasi-Newton steps;
#: Adam's is in pixel units (0-1 range) per step.
DEFAULT_LEARNING_RATES: dict[Optimizer, float] = {Optimizer.LBFGS: 1.0, Optimizer.ADAM: 0.02}


Weight = Annotated[float, Field(gt=0, allow_inf_nan=False, strict=True)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False, strict=True)]
LayerWeights = dict[str, Weight]
_FROZEN = ConfigDict(extra="forbid", frozen=True)


def _resolve(cls: type, path: Path | None, info: ValidationInfo) -> Path | None:
    base = (info.context or {}).get("base_dir")
    if path is None or base is None:
        return path
    return (Path(base) / path.expanduser()).resolve()


def _check_layers(cls: type, layers: dict[str, float]) -> dict[str, float]:
    if not layers:
        raise ValueError("must name at least one layer")
    for name in layers:
        if name not in FEATURE_LAYERS:
            hint = difflib.get_close_matches(name, FEATURE_LAYERS, n=1)
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ValueError(f"unknown VGG19 layer {name!r}{suggestion}; layers are conv1_1/relu1_1 ... relu5_4")
    return layers


class Style(BaseModel):
    """One style image and its share of the blend."""

    model_config = _FROZEN
    image: Path
    weight: Weight = 1.0
    #: Style image long side relative to the output's long side: 0.5 makes the
    #: style's features twice as large on the output.
    scale: Annotated[float, Field(gt=0, le=8, allow_inf_nan=False, strict=True)] = 1.0

    _resolve_image = field_validator("image")(_resolve)


class Content(BaseModel):
    """The content image of a style transfer and how strongly it is kept."""

    model_config = _FROZEN
    image: Path
    weight: Weight = 1.0
    layers: LayerWeights = Field(default_factory=lambda: dict(DEFAULT_CONTENT_LAYERS))

    _resolve_image = field_validator("image")(_resolve)
    _check_layers = field_validator("layers")(_check_layers)


class Recipe(BaseModel):
    """A complete, validated synthesis request.

    ``size`` is the output's long side (the short side follows the content
    image's aspect, or equals it for a texture) or ``(width, height)``.
    Losses are normalized so weights near 1 are meaningful: style and content
    layer weights are divided by their sums, style image weights likewise, and
    every layer's loss is a relative error, independent of layer size and image
    size. The total is ``style_weight * style + content.weight * content +
    tv_weight * tv``, with the content term pre-scaled (graph.CONTENT_SCALE) so
    that equal weights give a balanced style transfer.
    """

    model_config = _FROZEN
    version: Annotated[int, Field(strict=True)] = RECIPE_VERSION
    size: int | tuple[int, int] = 256
    steps: Annotated[int, Field(ge=1, le=100_000, strict=True)] = 300
    seed: Annotated[int, Field(ge=0, lt=2**63, strict=True)] = 0
    styles: Annotated[tuple[Style, ...], Field(min_length=1)]
    style_layers: LayerWeights = Field(default_factory=lambda: dict(DEFAULT_STYLE_LAYERS))
    style_weight: Weight = 1.0
    content: Content | None = None
    optimizer: Optimizer = Optimizer.LBFGS
    #: None picks the optimizer's own default (see optimize.py).
    learning_rate: Weight | None = None
    #: None means ``content`` when there is a content image, else ``noise``.
    init: Init | None = None
    tv_weight: NonNegative = 0.0
    pooling: Pooling = Pooling.MAX
    output: Path | None = None
    #: A torchvision ``vgg19`` state dict to use instead of the shipped Caffe weights.
    weights: Path | None = None

    _resolve_paths = field_validator("output", "weights")(_resolve)
    _check_layers = field_validator("style_layers")(_check_layers)

    @field_validator("version")
    @classmethod
    def _known_version(cls, version: int) -> int:
        if version > RECIPE_VERSION:
            from . import __version__

            raise ValueError(
                f"this recipe is format version {version}, but texsynth {__version__} reads "
                f"version {RECIPE_VERSION} and older; upgrade texsynth to run it"
            )
        if version < 1:
            raise ValueError("must be 1 or more")
        return version

    @field_validator("size", mode="before")
    @classmethod
    def _parse_size(cls, value: Any) -> int | tuple[int, int]:
        sides = value if isinstance(value, (list, tuple)) else [value]
        if len(sides) not in (1, 2) or not all(type(side) is int for side in sides):
            raise ValueError(f"must be a long side in px or [width, height], got {value!r}")
        for side in sides:
            if side < MIN_SIDE or side > MAX_SIDE:
                raise ValueError(f"{side} px is out of range: each side must be between {MIN_SIDE} and {MAX_SIDE} px")
        return sides[0] if len(sides) == 1 else (sides[0], sides[1])

    @field_validator("output")
    @classmethod
    def _image_suffix(cls, output: Path | None) -> Path | None:
        if output is not None and output.suffix.lower() not in OUTPUT_SUFFIXES:
            raise ValueError(f"unsupported image type {output.suffix or '(none)'!r}; use .png, .jpg or .webp")
        return output

    @model_validator(mode="after")
    def _consistent(self) -> Recipe:
        if self.init is Init.CONTENT and self.content is None:
            raise ValueError("init: 'content' needs a content image")
        minimum = self.min_side
        sides = self.size if isinstance(self.size, tuple) else (self.size,)
        if min(sides) < minimum:
            raise ValueError(
                f"size: {min(sides)} px is too small for {self.deepest_layer}; the deepest layer "
                f"needs at least {minimum} px per side"
            )
        return self

    @property
    def layers(self) -> set[str]:
        """Every VGG19 layer the recipe reads."""
        layers = set(self.style_layers)
        if self.content is not None:
            layers |= set(self.content.layers)
        return layers

    @property
    def deepest_layer(self) -> str:
        return deepest_layer(self.layers)

    @property
    def min_side(self) -> int:
        """Smallest side that leaves the deepest layer at least 2 px wide."""
        return max(MIN_SIDE, 2 ** (downsampling(self.deepest_layer) + 1))

    @property
    def effective_init(self) -> Init:
        if self.init is not None:
            return self.init
        return Init.CONTENT if self.content is not None else Init.NOISE

    @property
    def effective_learning_rate(self) -> float:
        return self.learning_rate or DEFAULT_LEARNING_RATES[self.optimizer]

    def output_size(self, content_size: tuple[int, int] | None = None) -> tuple[int, int]:
        """(width, height) of the output, following the content's aspect when ``size`` is one number."""
        if isinstance(self.size, tuple):
            return self.size
        if content_size is None:
            return (self.size, self.size)
        width, height = content_size
        scale = self.size / max(width, height)
        return (max(1, round(width * scale)), max(1, round(height * scale)))

    def to_dict(self) -> dict[str, Any]:
        """The effective recipe (every default filled in) as plain YAML/JSON data."""
        data = self.model_dump(mode="json", exclude_none=True)
        data["init"] = self.effective_init.value
        data["learning_rate"] = self.effective_learning_rate
        if isinstance(self.size, tuple):
            data["size"] = list(self.size)
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# ---------------------------------------------------------------- loading


class _StrictLoader(yaml.SafeLoader):
    """Safe YAML that also refuses duplicate keys, which PyYAML would silently overwrite."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate field {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    """Parse YAML text safely; returns the data and the node tree (for line numbers)."""
    try:
        node = yaml.compose(text, Loader=_StrictLoader)
        data = yaml.load(text, Loader=_StrictLoader)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}" if mark else None
        problem = error.problem or error.context or "unreadable"
        raise TexsynthError(located(source, where, f"invalid YAML: {problem}")) from None
    except yaml.YAMLError as error:
        raise TexsynthError(located(source, None, f"invalid YAML: {error}")) from None
    return data, node


def load_recipe(path: str | Path, *, overrides: Mapping[str, Any] | None = None) -> Recipe:
    """Read, validate and resolve a recipe file; ``overrides`` replace fields (command-line options).

    Raises :class:`TexsynthError` listing every problem found, the first in its message.
    """
    path = Path(path)
    source = str(path)
    if not path.exists():
        raise TexsynthError(located(source, None, "no such recipe file"))
    if not path.is_file():
        raise TexsynthError(located(source, None, "not a file"))
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise TexsynthError(located(source, None, f"cannot read recipe: {error}")) from None
    data, node = read_yaml(text, source)
    return parse_recipe(
        data, source=source, base_dir=path.resolve().parent, name=path.stem, node=node, overrides=overrides
    )


def parse_recipe(
    data: Any,
    *,
    source: str = "recipe",
    base_dir: Path | None = None,
    name: str = "texsynth",
    node: yaml.Node | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Recipe:
    """Validate recipe data (as loaded from YAML) and check its input files."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise TexsynthError(located(source, None, f"a recipe must be a mapping of fields, got {kind(data)}"))
    merged = dict(data)
    overrides = {key: value for key, value in (overrides or {}).items() if value is not None}
    merged.update(overrides)
    if "output" not in merged and base_dir is not None:
        merged["output"] = str(Path("out") / f"{name}.png")
    context = {"base_dir": base_dir or Path.cwd()}
    try:
        recipe = Recipe.model_validate(merged, context=context)
    except ValidationError as error:
        problems = [describe(e, source, node, overrides, Recipe) for e in drop_redundant(error.errors())]
        raise TexsynthError(problems[0], problems=problems) from None
    problems = [locate(loc, message, source, None, overrides) for loc, message in check_inputs(recipe)]
    if problems:
        raise TexsynthError(problems[0], problems=problems)
    return recipe


def check_inputs(recipe: Recipe) -> list[tuple[tuple, str]]:
    """(location, problem) for each file the recipe reads that is missing, unreadable or not an image."""
    from .io import probe_image

    problems: list[tuple[tuple, str]] = []
    images: list[tuple[tuple, Path]] = [(("styles", i, "image"), style.image) for i, style in enumerate(recipe.styles)]
    if recipe.content is not None:
        images.append((("content", "image"), recipe.content.image))
    for loc, path in images:
        problem = probe_image(path)
        if problem:
            problems.append((loc, problem))
    if recipe.weights is not None and not recipe.weights.is_file():
        problems.append((("weights",), f"no such file: {recipe.weights}"))
    return problems

