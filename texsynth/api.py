"""The Python API: a :class:`Recipe` in, an image out.

``synthesize`` runs a recipe and returns the image as a tensor; ``render`` also
writes it, atomically, with the recipe embedded. Both take an explicit device
(``pick_device`` chooses one the way the CLI does) and report through an
optional ``on_step`` callback, so they work the same without the CLI.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from . import __version__
from .errors import TexsynthError, located
from .features import VGGFeatures
from .graph import compile_graph, content_targets, style_targets
from .io import image_size, load_image, save_image, writable_problem
from .optimize import Progress, optimize
from .colour import COLOUR_CONTROLS
from .initial import StartInputs, mean_colour, starting_image
from .recipe import Recipe

ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class Synthesis:
    """What a run produced: the image (1, 3, H, W) in [0, 1] on the CPU, and how it went."""

    image: Tensor
    losses: dict[str, float]
    steps: int
    interrupted: bool
    seconds: float
    device: str


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


def synthesize(recipe: Recipe, *, device: str | torch.device = "cpu", on_step: ProgressCallback | None = None) -> Synthesis:
    """Run ``recipe`` on ``device`` and return the image.

    Texture synthesis (Gatys et al. 2015) when the recipe has no content image,
    style transfer (Gatys et al. 2016) when it has one. Style targets are
    computed once; the loop evaluates only the generated image.
    """
    device = torch.device(device)
    # 1. Inputs, at the sizes the recipe asks for.
    content = None
    if recipe.content is not None:
        width, height = recipe.output_size(image_size(recipe.content.image))
        content = load_image(recipe.content.image, (width, height))
    else:
        width, height = recipe.output_size()
    if min(width, height) < recipe.min_side:
        raise TexsynthError(
            f"size: the output would be {width}x{height} px; {recipe.deepest_layer} needs "
            f"at least {recipe.min_side} px per side"
        )
    styles = [load_image(style.image, _style_size(style.image, style.scale, max(width, height))) for style in recipe.styles]
    init_image = load_image(recipe.init_image, (width, height)) if recipe.init_image is not None else None
    # Colour preservation prepares the inputs; the optimizer then works on what it returns.
    colour = COLOUR_CONTROLS[recipe.preserve_colour](content)
    styles = [colour.style(style) for style in styles]
    if content is not None:
        content = colour.working(content)

    # 2. A frozen VGG19 cut after the deepest layer the recipe reads.
    extractor = VGGFeatures(recipe.layers, weights=recipe.weights, pooling=recipe.pooling.value).to(device)

    # 3. Targets, once.
    grams = style_targets(
        extractor, [s.to(device) for s in styles], [s.weight for s in recipe.styles], list(recipe.style_layers)
    )
    content_features = None
    if recipe.content is not None and content is not None:
        content_features = content_targets(extractor, content.to(device), list(recipe.content.layers))
    graph = compile_graph(recipe, grams, content_features).to(device)

    # 4. Optimize the image.
    start = starting_image(
        recipe.effective_init,
        StartInputs(
            shape=(1, 3, height, width),
            seed=recipe.seed,
            content=content,
            image=colour.working(init_image) if init_image is not None else None,
            style_mean=mean_colour(styles, [style.weight for style in recipe.styles]),
        ),
    )
    result = optimize(
        start.to(device),
        lambda image: graph(extractor(image)),
        steps=recipe.steps,
        optimizer=recipe.optimizer,
        learning_rate=recipe.effective_learning_rate,
        on_step=_finishing(on_step, colour.finish),
    )
    losses = {name: float(value.mean()) for name, value in result.losses.items()}
    return Synthesis(
        image=colour.finish(result.image.detach()).cpu(),
        losses=losses,
        steps=result.steps,
        interrupted=result.interrupted,
        seconds=result.seconds,
        device=str(device),
    )


def _finishing(on_step: ProgressCallback | None, finish: Callable[[Tensor], Tensor]) -> ProgressCallback | None:
    """``on_step`` seeing each step's image in output colours (the optimizer may work in others)."""
    if on_step is None:
        return None

    def report(progress: Progress) -> None:
        image = progress.image
        on_step(replace(progress, image=finish(image.detach()) if image is not None else None))

    return report


def _style_size(path: Path, scale: float, output_long_side: int) -> tuple[int, int]:
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
