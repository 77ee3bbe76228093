"""Starter recipes: ``texsynth new`` writes a commented recipe for given images.

The recipe lists every field a user is likely to touch, set to its default
(read from :mod:`texsynth.recipe`, so the starter never disagrees with the
loader), with a comment saying what it does; image paths are written relative
to the new recipe's folder so the folder can be shared. The text is checked by
the real loader before it is written.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import yaml

from .errors import TexsynthError
from .io import atomic_write, probe_image
from .recipe import DEFAULT_CONTENT_LAYERS, DEFAULT_STYLE_LAYERS, RECIPE_VERSION, Recipe, parse_recipe
from .safe_yaml import read_yaml


def parse_style(text: str) -> tuple[Path, float]:
    """``"a.jpg:0.7"`` -> (a.jpg, 0.7); ``"a.jpg"`` -> (a.jpg, 1.0). A path may itself contain colons.

    Raises ValueError, whose message the caller prefixes with what it parsed.
    """
    path, colon, weight = text.rpartition(":")
    if colon:
        try:
            value = float(weight)
        except ValueError:
            return Path(text), 1.0
        if not value > 0 or value == float("inf"):
            raise ValueError(f"weight must be a number > 0, got {weight!r} in {text!r}")
        return Path(path), value
    return Path(text), 1.0


StyleSpec = str | tuple[Path, float]


def _default(field: str) -> object:
    value = Recipe.model_fields[field].default
    return getattr(value, "value", value)


def _flow(layers: dict[str, float]) -> str:
    return "{" + ", ".join(f"{name}: {weight}" for name, weight in layers.items()) + "}"


def _path_from(folder: Path, image: Path) -> str:
    # abspath, not resolve: a symlinked images folder should stay as the user sees it.
    path = Path(os.path.relpath(os.path.abspath(image), folder)).as_posix()
    # A recipe expands a leading ~ to a home folder: a file named "~x" beside the recipe is "./~x".
    return f"./{path}" if path.startswith("~") else path


def yaml_text(text: str) -> str:
    """``text`` as a YAML value that reads back as exactly this text: as it is where it does, else
    double-quoted with escapes (a path named ``null``, ``123``, ``a: b``, ``#1`` or `` x`` stays a path)."""
    try:
        if yaml.safe_load(f"value: {text}") == {"value": text}:
            return text
    except yaml.YAMLError:
        pass
    return yaml.safe_dump(text, default_style='"', width=float("inf")).rstrip("\n")


Line = str | tuple[str, str]  # a line, or (code, comment): comments are lined up in one column


def starter_text(styles: Sequence[tuple[Path, float]], content: Path | None, folder: Path, name: str) -> str:
    """The commented recipe for ``styles`` (path, weight) and an optional ``content``, saved in ``folder``."""
    kind = "style transfer" if content is not None else "texture synthesis"
    lines: list[Line] = [
        f"# texsynth recipe ({kind}), written by `texsynth new`. Paths are relative to this file.",
        "# Every field is explained in the README; `texsynth schema` lets editors complete and check it.",
        f"version: {RECIPE_VERSION}",
        (f"size: {_default('size')}", "output long side in px, or [width, height]"),
        (f"steps: {_default('steps')}", "optimizer iterations"),
        (f"seed: {_default('seed')}", "same recipe + seed + device -> the same image"),
        "styles:",
    ]
    for image, weight in styles:
        lines += [
            f"  - image: {yaml_text(_path_from(folder, image))}",
            (f"    weight: {weight}", "share of the blend (weights are normalized to sum to 1)"),
            ("    scale: 1.0", "style size on the output: 2 = features twice as large, 0.5 = half"),
        ]
    lines += [
        f"style_layers: {_flow(DEFAULT_STYLE_LAYERS)}",
        (f"style_weight: {_default('style_weight')}", "raise (3-10) for a stronger style"),
    ]
    if content is not None:
        lines += [
            "content:",
            f"  image: {yaml_text(_path_from(folder, content))}",
            ("  weight: 1.0", "how much of the photo is kept"),
            f"  layers: {_flow(DEFAULT_CONTENT_LAYERS)}",
            (
                f"preserve_colour: {_default('preserve_colour')}",
                "none | luminance | histogram: keep the photo's colours",
            ),
            ("init: content", "noise | content | image (set init_image:) | style_mean"),
        ]
    else:
        lines += [("init: noise", "noise | image (set init_image:) | style_mean")]
    lines += [
        "# init_image: start.png",
        (f"optimizer: {_default('optimizer')}", "lbfgs | adam"),
        (f"tv_weight: {_default('tv_weight')}", "> 0 (e.g. 1) smooths single-pixel noise"),
        (f"pooling: {_default('pooling')}", "max | avg"),
        f"output: {yaml_text(f'out/{name}.png')}",
    ]
    return "\n".join(_aligned(line) for line in lines) + "\n"


def _aligned(line: Line) -> str:
    """A line, with its comment (if any) in the column every comment starts in."""
    if isinstance(line, str):
        return line
    code, comment = line
    return f"{code:<26}# {comment}"


def write_starter(
    *, output: Path, styles: Sequence[StyleSpec], content: Path | None = None, force: bool = False
) -> Path:
    """Write a commented starter recipe to ``output`` for ``styles``: "path", "path:weight" or (path, weight)."""
    output = Path(output)
    if output.suffix.lower() not in (".yaml", ".yml"):
        raise TexsynthError(f"{output}: output: a recipe file must end in .yaml or .yml")
    if output.exists() and not force:
        raise TexsynthError(f"{output}: already exists; pass --force to replace it")
    if not styles:
        raise TexsynthError("styles: give at least one style image")
    parsed = []
    for index, style in enumerate(styles):
        try:
            parsed.append(parse_style(style) if isinstance(style, str) else (Path(style[0]), float(style[1])))
        except ValueError as error:
            raise TexsynthError(f"styles[{index}]: {error}") from None
    named = [
        *((f"styles[{i}]", image) for i, (image, _) in enumerate(parsed)),
        *([("content", content)] if content else []),
    ]
    for field, image in named:
        problem = probe_image(Path(image))
        if problem:
            raise TexsynthError(f"{field}: {problem}")
    folder = Path(os.path.abspath(output)).parent
    text = starter_text(parsed, content, folder, output.stem)
    data, node = read_yaml(text, str(output))
    parse_recipe(data, source=str(output), base_dir=folder, name=output.stem, node=node)
    with atomic_write(output, "w") as handle:
        handle.write(text)
    return output
