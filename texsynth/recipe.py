"""The recipe: a typed, frozen description of one synthesis, parsed from YAML once.

Everything a user can set lives here with its default, so the rest of texsynth
takes a :class:`Recipe` and never looks at dicts, YAML or command-line objects.
Relative paths inside a recipe resolve against the recipe file's folder, so a
folder of recipe + images can be zipped and shared. Problems are reported as
``file: field: what is wrong`` (with the YAML line where it is known).
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from ._version import __version__
from .errors import TexsynthError, located, shown
from .features import FEATURE_LAYERS, deepest_layer, downsampling
from .files import expanded
from .io import probe_image
from .messages import drop_redundant, kind, problem_message
from .preflight import size_problem
from .safe_yaml import MAX_RECIPE_BYTES, read_yaml

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
    IMAGE = "image"
    STYLE_MEAN = "style_mean"


class PreserveColour(str, Enum):
    """How a style transfer keeps the content's colours (Gatys et al. 2017, see colour.py)."""

    NONE = "none"
    LUMINANCE = "luminance"
    HISTOGRAM = "histogram"


class Pooling(str, Enum):
    MAX = "max"
    AVG = "avg"


class StyleLoss(str, Enum):
    """How a layer's features are compared with the style's (see losses/).

    ``auto`` is ``gram+sliced_wasserstein`` for textures and ``gram`` for style
    transfers. For textures the sum matched the style better than either alone
    (benchmarks/quality.py, README "Style losses"); for transfers the content
    weight is calibrated against the Gram term alone, and a transfer should take
    the painting's strokes, not the whole distribution of its features.
    """

    AUTO = "auto"
    GRAM = "gram"
    SLICED = "sliced_wasserstein"
    BOTH = "gram+sliced_wasserstein"


class Precision(str, Enum):
    #: bf16 convolutions on CUDA and on CPUs with native bf16, fp32 elsewhere (targets.resolved_precision).
    AUTO = "auto"
    FP32 = "fp32"
    BF16 = "bf16"


#: Learning rate when a recipe sets none: L-BFGS takes full quasi-Newton steps;
#: Adam's is in pixel units (0-1 range) per step.
DEFAULT_LEARNING_RATES: dict[Optimizer, float] = {Optimizer.LBFGS: 1.0, Optimizer.ADAM: 0.02}


Weight = Annotated[float, Field(gt=0, allow_inf_nan=False, strict=True)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False, strict=True)]
LayerWeights = dict[str, Weight]
_FROZEN = ConfigDict(extra="forbid", frozen=True)


def _home_expanded(cls: type, value: Any) -> Any:
    """A path as written, with a leading ``~`` or ``~user`` expanded.

    Done on the text, before it becomes a Path: ``./~x`` names a file called
    ``~x`` beside the recipe, but as a Path it would read ``~x`` again.
    """
    if isinstance(value, str) and "\x00" in value:
        raise ValueError("a path cannot contain a NUL character")
    return str(expanded(Path(value))) if isinstance(value, str) and value.startswith("~") else value


def _resolve(cls: type, path: Path | None, info: ValidationInfo) -> Path | None:
    base = (info.context or {}).get("base_dir")
    if path is None or base is None:
        return path
    return (Path(base) / path).resolve()


def _input_image(cls: type, path: Path | None, info: ValidationInfo) -> Path | None:
    """Resolve an input image path and, when parsing a recipe, check that it opens as an image.

    Checking here rather than after validation lists a missing image together
    with every other problem, with its YAML line.
    """
    path = _resolve(cls, path, info)
    if path is not None and (info.context or {}).get("check_files"):
        problem = probe_image(path)
        if problem:
            raise ValueError(problem)
    return path


def _check_layers(cls: type, layers: dict[str, float]) -> dict[str, float]:
    if not layers:
        raise ValueError("must name at least one layer")
    for name in layers:
        if name not in FEATURE_LAYERS:
            hint = difflib.get_close_matches(name, FEATURE_LAYERS, n=1) if len(name) < 100 else []
            suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ValueError(f"unknown VGG19 layer {shown(name)}{suggestion}; layers are conv1_1/relu1_1 ... relu5_4")
    return layers


class Style(BaseModel):
    """One style image and its share of the blend."""

    model_config = _FROZEN
    image: Path
    weight: Weight = 1.0
    #: Style image long side relative to the output's long side: the style's
    #: features on the output grow with it (2: twice as large, 0.5: half).
    scale: Annotated[float, Field(gt=0, le=8, allow_inf_nan=False, strict=True)] = 1.0
    #: Where this style applies: an image, white = fully, black = not at all,
    #: resized to the output. Without one, the style applies everywhere.
    mask: Path | None = None

    _expand_home = field_validator("image", "mask", mode="before")(_home_expanded)
    _resolve_image = field_validator("image", "mask")(_input_image)


class Content(BaseModel):
    """The content image of a style transfer and how strongly it is kept."""

    model_config = _FROZEN
    image: Path
    weight: Weight = 1.0
    layers: LayerWeights = Field(default_factory=lambda: dict(DEFAULT_CONTENT_LAYERS))

    _expand_home = field_validator("image", mode="before")(_home_expanded)
    _resolve_image = field_validator("image")(_input_image)
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
    #: None means ``image`` when init_image is set, else ``content`` when there
    #: is a content image, else ``noise``.
    init: Init | None = None
    #: The starting image for ``init: image``, resized to the output size.
    init_image: Path | None = None
    preserve_colour: PreserveColour = PreserveColour.NONE
    tv_weight: NonNegative = 0.0
    pooling: Pooling = Pooling.MAX
    output: Path | None = None
    #: A torchvision ``vgg19`` state dict to use instead of the shipped Caffe weights.
    weights: Path | None = None
    #: Coarse-to-fine pyramid: "auto" (a texture up to 256 px from ~64 px, anything
    #: larger from ~128 px; see scales.auto_scale_count), or a number of scales; 1 turns it off.
    scales: Literal["auto"] | int = "auto"
    #: Make the output wrap around seamlessly (circular padding in VGG19 and TV).
    tileable: Annotated[bool, Field(strict=True)] = False
    #: Arithmetic of the convolutions: auto is bf16 on CUDA and fp32 elsewhere.
    precision: Precision = Precision.AUTO
    #: Gram matrices (Gatys et al.), sliced Wasserstein (Heitz et al. 2021), or both;
    #: auto: both for textures, Gram for style transfers.
    style_loss: StyleLoss = StyleLoss.AUTO

    _expand_home = field_validator("output", "init_image", "weights", mode="before")(_home_expanded)
    _resolve_paths = field_validator("output")(_resolve)
    _resolve_inputs = field_validator("init_image")(_input_image)
    _check_layers = field_validator("style_layers")(_check_layers)

    @field_validator("version")
    @classmethod
    def _known_version(cls, version: int) -> int:
        if version > RECIPE_VERSION:
            raise ValueError(
                f"this recipe is format version {version}, but texsynth {__version__} reads "
                f"version {RECIPE_VERSION} and older; upgrade texsynth to run it"
            )
        if version < 1:
            raise ValueError("must be 1 or more")
        return version

    @field_validator("weights")
    @classmethod
    def _weights_file(cls, path: Path | None, info: ValidationInfo) -> Path | None:
        path = _resolve(cls, path, info)
        if path is not None and (info.context or {}).get("check_files") and not path.is_file():
            raise ValueError(f"no such file: {path}")
        return path

    @field_validator("size", mode="before")
    @classmethod
    def _parse_size(cls, value: Any) -> int | tuple[int, int]:
        sides = value if isinstance(value, (list, tuple)) else [value]
        if len(sides) not in (1, 2) or not all(type(side) is int for side in sides):
            raise ValueError(f"must be a long side in px or [width, height], got {shown(value)}")
        for side in sides:
            if side < MIN_SIDE or side > MAX_SIDE:
                raise ValueError(f"{side} px is out of range: each side must be between {MIN_SIDE} and {MAX_SIDE} px")
        return sides[0] if len(sides) == 1 else (sides[0], sides[1])

    @field_validator("scales", mode="before")
    @classmethod
    def _parse_scales(cls, value: Any) -> str | int:
        if value == "auto" or (type(value) is int and 1 <= value <= 8):
            return value
        raise ValueError(f"must be 'auto' or a whole number from 1 to 8, got {shown(value)}")

    @field_validator("output")
    @classmethod
    def _image_suffix(cls, output: Path | None) -> Path | None:
        if output is not None and output.suffix.lower() not in OUTPUT_SUFFIXES:
            raise ValueError(f"unsupported image type {shown(output.suffix or '(none)')}; use .png, .jpg or .webp")
        return output

    @model_validator(mode="after")
    def _consistent(self) -> Recipe:
        if self.init is Init.CONTENT and self.content is None:
            raise ValueError("init: 'content' needs a content image")
        if self.effective_init is Init.IMAGE and self.init_image is None:
            raise ValueError("init: 'image' needs init_image, the path of the starting image")
        if self.init_image is not None and self.effective_init is not Init.IMAGE:
            raise ValueError(f"init_image: is only used with init: image, but init is {self.effective_init.value!r}")
        if self.masked and self.effective_style_loss is not StyleLoss.GRAM:
            index = next(i for i, style in enumerate(self.styles) if style.mask is not None)
            raise ValueError(
                f"styles[{index}].mask: masks work with style_loss: gram (or auto), not {self.style_loss.value}"
            )
        if self.preserve_colour is not PreserveColour.NONE and self.content is None:
            raise ValueError(
                f"preserve_colour: {self.preserve_colour.value!r} keeps a content image's colours, "
                "but the recipe has no content image"
            )
        minimum = self.min_side
        sides = self.size if isinstance(self.size, tuple) else (self.size,)
        if min(sides) < minimum:
            raise ValueError(
                f"size: {min(sides)} px is too small for {self.deepest_layer}; the deepest layer "
                f"needs at least {minimum} px per side"
            )
        if self.tileable and any(side % self.tile_multiple for side in sides):
            raise ValueError(
                f"size: a tileable output needs sides divisible by {self.tile_multiple} "
                f"({self.deepest_layer} sees the image halved {downsampling(self.deepest_layer)} times), "
                f"got {self.size}"
            )
        return self

    @model_validator(mode="after")
    def _fits_at_every_scale(self, info: ValidationInfo) -> Recipe:
        """When files are checked: the output and every style image are large enough for the deepest layer."""
        if (info.context or {}).get("check_files"):
            problem = size_problem(self)
            if problem:
                raise ValueError(problem)
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
    def tile_multiple(self) -> int:
        """Side lengths a tileable output must divide by: every pooling must see whole 2×2 cells."""
        return 2 ** downsampling(self.deepest_layer)

    @property
    def padding(self) -> str:
        """How VGG19 sees beyond the image's edges: circularly for a tileable output, else zeros."""
        return "circular" if self.tileable else "zeros"

    @property
    def effective_init(self) -> Init:
        if self.init is not None:
            return self.init
        if self.init_image is not None:
            return Init.IMAGE
        return Init.CONTENT if self.content is not None else Init.NOISE

    def input_images(self) -> list[tuple[tuple[str | int, ...], Path]]:
        """(field location, path) of every image the recipe reads, in recipe order."""
        images: list[tuple[tuple[str | int, ...], Path]] = []
        for index, style in enumerate(self.styles):
            images.append((("styles", index, "image"), style.image))
            if style.mask is not None:
                images.append((("styles", index, "mask"), style.mask))
        if self.content is not None:
            images.append((("content", "image"), self.content.image))
        if self.init_image is not None:
            images.append((("init_image",), self.init_image))
        return images

    @property
    def masked(self) -> bool:
        """Whether any style is limited to a region by a mask."""
        return any(style.mask is not None for style in self.styles)

    @property
    def effective_style_loss(self) -> StyleLoss:
        if self.style_loss is not StyleLoss.AUTO:
            return self.style_loss
        return StyleLoss.GRAM if self.content is not None or self.masked else StyleLoss.BOTH

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
        step = self.tile_multiple if self.tileable else 1
        return (max(step, round(width * scale / step) * step), max(step, round(height * scale / step) * step))

    def to_dict(self) -> dict[str, Any]:
        """The effective recipe (every default filled in) as plain YAML/JSON data."""
        data = self.model_dump(mode="json", exclude_none=True)
        data["init"] = self.effective_init.value
        data["learning_rate"] = self.effective_learning_rate
        data["style_loss"] = self.effective_style_loss.value
        if isinstance(self.size, tuple):
            data["size"] = list(self.size)
        return data

    def portable(self, *, relative_to: Path | None = None) -> dict[str, Any]:
        """The effective recipe without its output path: what outputs, bundles, tiles and manifests carry.

        The output path says where one copy went, not how to make it. Leaving it
        out makes two runs that differ only in where they write give identical
        files, keeps a bundle from telling its recipient where to write, and lets
        a batch folder move without orphaning its tiles. With ``relative_to``,
        image paths are written relative to that folder (a model file's recipe,
        so it still finds its images when the folder moves with them).
        """
        data = self.to_dict()
        data.pop("output", None)
        if relative_to is not None:
            base = Path(relative_to).resolve()
            for location, path in self.input_images():
                _set_at(data, location, Path(os.path.relpath(path, base)).as_posix())
        return data

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _set_at(data: dict[str, Any], location: tuple[str | int, ...], value: Any) -> None:
    """``data[location[0]][location[1]]... = value``."""
    node: Any = data
    for part in location[:-1]:
        node = node[part]
    node[location[-1]] = value


# ---------------------------------------------------------------- loading


def load_recipe(
    path: str | Path,
    *,
    overrides: Mapping[str, Any] | None = None,
    source: str | None = None,
    name: str | None = None,
    replacing: Mapping[str, Any] | None = None,
) -> Recipe:
    """Read, validate and resolve a recipe file; ``overrides`` replace fields (command-line options).

    ``source`` names the file in messages (default: its path); ``name`` gives the
    default output ``out/<name>.png`` (default: the file's stem); ``replacing``:
    see :func:`parse_recipe`. Raises :class:`TexsynthError` listing every problem
    found, the first in its message.
    """
    path = Path(path)
    source = source or str(path)
    if not path.exists():
        raise TexsynthError(located(source, None, "no such recipe file"))
    if not path.is_file():
        raise TexsynthError(located(source, None, "not a file"))
    try:
        if path.stat().st_size > MAX_RECIPE_BYTES:
            raise TexsynthError(located(source, None, f"larger than {MAX_RECIPE_BYTES // 1000} kB; is it a recipe?"))
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise TexsynthError(located(source, None, f"cannot read recipe: {error}")) from None
    data, node = read_yaml(text, source)
    return parse_recipe(
        data,
        source=source,
        base_dir=path.resolve().parent,
        name=name or path.stem,
        node=node,
        overrides=overrides,
        replacing=replacing,
    )


def parse_recipe(
    data: Any,
    *,
    source: str = "recipe",
    base_dir: Path | None = None,
    name: str = "texsynth",
    node: yaml.Node | None = None,
    overrides: Mapping[str, Any] | None = None,
    replacing: Mapping[str, Any] | None = None,
) -> Recipe:
    """Validate recipe data (as loaded from YAML) and check its input files.

    ``overrides`` replace fields and are named in messages as coming from the
    command line; a dotted key reaches into a nested one (``content.weight``),
    and into every style for ``styles.<field>`` (a list value gives one per
    style, in order). ``replacing`` sets top-level fields on the recipe's behalf
    (where a bundle's output goes) and is named as the recipe's own field.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise TexsynthError(located(source, None, f"a recipe must be a mapping of fields, got {kind(data)}"))
    overrides = {key: value for key, value in (overrides or {}).items() if value is not None}
    data = {**data, **{key: value for key, value in (replacing or {}).items() if value is not None}}
    merged = _overridden(data, overrides, source)
    if "output" not in merged and base_dir is not None:
        merged["output"] = str(Path("out") / f"{name}.png")
    context = {"base_dir": base_dir or Path.cwd(), "check_files": True}
    try:
        return Recipe.model_validate(merged, context=context)
    except ValidationError as error:
        problems = [problem_message(e, source, node, overrides, Recipe) for e in drop_redundant(error.errors())]
        raise TexsynthError(problems[0], problems=problems) from None
    except RecursionError:  # a self-referencing YAML alias
        raise TexsynthError(located(source, None, "a value refers to itself (YAML alias loop)")) from None


def _overridden(data: dict, overrides: Mapping[str, Any], source: str) -> dict:
    merged = dict(data)
    for key, value in overrides.items():
        head, _, field = key.partition(".")
        current = merged.get(head)
        if not field:
            merged[head] = value
        elif isinstance(current, dict):
            merged[head] = {**current, field: value}
        elif isinstance(current, list):
            values = value if isinstance(value, list) else [value] * len(current)
            if len(values) != len(current):
                raise TexsynthError(
                    located(source, f"{key} (from the command line)", f"{len(values)} values for {len(current)} {head}")
                )
            merged[head] = [
                {**item, field: one} if isinstance(item, dict) else item for item, one in zip(current, values)
            ]
        else:
            raise TexsynthError(located(source, f"{key} (from the command line)", f"the recipe has no {head}"))
    return merged
