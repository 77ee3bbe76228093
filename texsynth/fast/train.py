"""Training a feed-forward network from a recipe, against the recipe's own loss graph.

A recipe without a content image trains a texture generator from noise
(Ulyanov et al. 2016/2017); one with a content image trains an image
transformation network on crops of a folder of photos (Johnson et al. 2016),
the recipe's content image being its example. Several styles train one
network with conditional instance normalization (Dumoulin et al. 2017): each
batch draws its blend (pure styles, the recipe's own, random mixtures).

The loss is the optimization path's: :func:`texsynth.targets.compile_at`
builds the recipe's graph at the recipe's own output size (so the style's
features are as large on a network's output as on an optimized image), and
every batch is scored by it, re-blended to the batch's weights
(:meth:`~texsynth.graph.LossGraph.set_blend`) and, for transfer networks,
compared with each photo's own content features
(:meth:`~texsynth.graph.LossGraph.set_content_targets`). Nothing here computes
a loss of its own. Training crops may be smaller than the recipe's size: the
networks are convolutional, and Gram and sliced-Wasserstein statistics are
averages over positions.

One iteration:

1. draw the batch's blend, its inputs (noise, or photo crops) and the random
   projections from (seed, iteration) alone;
2. run the network, then VGG19 (circular for tileable recipes), then the graph;
3. one Adam step on the batch-mean loss, at a learning rate that stays at
   ``learning_rate`` and then falls linearly over the last :data:`DECAY_SHARE`
   of the iterations to :data:`FINAL_RATE` of it (an annealed end settles the
   weights; it depends on the iteration and ``iterations`` alone, so a resumed
   run follows it too, and asking for more iterations stretches it).

:mod:`.loop` reports, checkpoints, resumes and stops cleanly around it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Protocol

import torch
from torch import Tensor

from ..api import output_size
from ..errors import TexsynthError, located
from ..graph import LossGraph, content_targets
from ..io import sha256, writable_problem
from ..provenance import recipe_identity
from ..recipe import PreserveColour, Recipe
from ..targets import compile_at, make_extractor
from .data import PhotoFolder, batch_noise, iteration_generator, training_blend
from .loop import Record, Trained, TrainingReport, resume_from, run_iterations
from .model_file import MODEL_SUFFIX, FastModel, checkpoint_path, style_names
from .networks import TextureGenerator, TransferNetwork

__all__ = ["Trained", "TrainingOptions", "TrainingReport", "check_model_output", "learning_rate_at", "train"]

#: The share of the iterations, at the end, over which the learning rate falls.
DECAY_SHARE = 0.3
#: Where it falls to, as a share of the learning rate.
FINAL_RATE = 0.05


def learning_rate_at(iteration: int, iterations: int, rate: float) -> float:
    """The learning rate of ``iteration`` (1-based) of ``iterations``: flat, then a linear fall at the end."""
    decay_from = iterations * (1 - DECAY_SHARE)
    if iteration <= decay_from:
        return rate
    progress = (iteration - decay_from) / max(iterations - decay_from, 1)
    return rate * (1 - (1 - FINAL_RATE) * progress)


@dataclass(frozen=True)
class TrainingOptions:
    """How to train; None picks the default for the device (see :meth:`resolved`)."""

    iterations: int = 2000
    #: Samples per iteration: 8 on CUDA, 4 elsewhere.
    batch_size: int | None = None
    #: Long side of the training samples: 256 on CUDA, 128 elsewhere (at most the recipe's size).
    size: int | None = None
    learning_rate: float = 2e-3
    #: None: the recipe's seed.
    seed: int | None = None
    checkpoint_every: int = 250

    def resolved(self, recipe: Recipe, device: torch.device, stride: int) -> TrainingOptions:
        """Every default filled in for ``device``, every value checked (messages name the parameter)."""
        cuda = device.type == "cuda"
        size = self.size if self.size is not None else min(256 if cuda else 128, max(recipe_size(recipe)))
        options = replace(
            self,
            batch_size=self.batch_size if self.batch_size is not None else (8 if cuda else 4),
            size=size,
            seed=self.seed if self.seed is not None else recipe.seed,
        )
        for name in ("iterations", "batch_size", "size", "checkpoint_every"):
            value = getattr(options, name)
            if value < 1:
                raise TexsynthError(f"{name}: must be at least 1, got {value}")
        if not (math.isfinite(options.learning_rate) and options.learning_rate > 0):
            raise TexsynthError(f"learning_rate: must be a number > 0, got {options.learning_rate}")
        if size % stride:
            raise TexsynthError(
                f"size: {size} px: training samples need sides divisible by {stride}, the network's stride"
            )
        return options


def recipe_size(recipe: Recipe) -> tuple[int, int]:
    """(width, height) the recipe asks for: the style's scale on a network's output is set for this size."""
    return recipe.output_size(None) if recipe.content is None else output_size(recipe)


def check_model_output(path: Path) -> Path:
    """The model path, after making sure it (and its checkpoint) can be written (nothing is created)."""
    path = Path(path)
    if not path.name.endswith(MODEL_SUFFIX):
        raise TexsynthError(f"{path}: output: a model file must end in {MODEL_SUFFIX}")
    problem = writable_problem(path) or writable_problem(checkpoint_path(path))
    if problem:
        raise TexsynthError(f"{path}: output: {problem}")
    return path


class _Task(Protocol):
    """What one kind of network trains on: its inputs per batch, and the content targets they bring."""

    @property
    def network(self) -> torch.nn.Module: ...

    def inputs(self, batch: int, size: int, draws: torch.Generator, device: torch.device) -> list[Tensor] | Tensor: ...

    def prepare(self, graph: LossGraph, inputs: list[Tensor] | Tensor) -> None: ...


class _Textures:
    """A texture generator: noise in, the style's statistics as the only target.

    Every generator pads circularly, tileable recipe or not: a zero-padded one
    learned where its edges were and drew the same frame around every sample
    (a Starry Night × Scream blend after 250 iterations), while on a torus the
    noise is the only thing that varies. A tileable recipe also trains VGG19
    circularly, so the wrap-around is right in the style's terms too.
    """

    def __init__(self, recipe: Recipe) -> None:
        self.network = TextureGenerator(styles=len(recipe.styles), padding="circular")

    def inputs(self, batch: int, size: int, draws: torch.Generator, device: torch.device) -> list[Tensor]:
        return [z.to(device) for z in batch_noise(self.network.noise_shapes(size, size), batch, draws)]

    def prepare(self, graph: LossGraph, inputs: list[Tensor] | Tensor) -> None:
        pass


class _Transfers:
    """A transformation network: photo crops in, each compared with its own content features."""

    def __init__(self, recipe: Recipe, photos: PhotoFolder, extract: Callable[[Tensor], dict[str, Tensor]]) -> None:
        self.network = TransferNetwork(styles=len(recipe.styles))
        self.photos = photos
        self.extract = extract
        assert recipe.content is not None
        self.layers = list(recipe.content.layers)

    def inputs(self, batch: int, size: int, draws: torch.Generator, device: torch.device) -> Tensor:
        return self.photos.batch(batch, size, draws).to(device)

    def prepare(self, graph: LossGraph, inputs: list[Tensor] | Tensor) -> None:
        assert isinstance(inputs, Tensor)
        graph.set_content_targets(content_targets(self.extract, inputs, self.layers))


def train(
    recipe: Recipe,
    *,
    output: Path,
    device: str | torch.device = "cpu",
    options: TrainingOptions = TrainingOptions(),
    content_dir: Path | None = None,
    resume: bool = False,
    on_iteration: Callable[[TrainingReport], None] | None = None,
    source: str = "recipe",
) -> Trained:
    """Train a network for ``recipe`` and write it to ``output`` (a ``.safetensors`` model file).

    A texture recipe trains a generator; a recipe with a content image trains
    a transformation network on the photos under ``content_dir``. Returns the
    model as written. See :mod:`.loop` for checkpoints, Ctrl-C and NaN handling.
    """
    device = torch.device(device)
    output = check_model_output(output)
    photos = _check_trainable(recipe, content_dir, source)
    seed = options.seed if options.seed is not None else recipe.seed
    extractor = make_extractor(recipe, device)
    with torch.random.fork_rng(devices=[]):  # the initial weights from the seed, the caller's RNG untouched
        torch.manual_seed(seed)
        task: _Task = _Textures(recipe) if photos is None else _Transfers(recipe, photos, extractor)
    network = task.network
    options = options.resolved(recipe, device, network.stride)  # type: ignore[arg-type]
    assert options.size is not None and options.batch_size is not None and options.seed is not None
    size, batch, seed = options.size, options.batch_size, options.seed
    checkpoint_file = checkpoint_path(output)
    identity = {"recipe": recipe_identity(recipe), "architecture": network.architecture()}  # type: ignore[operator]

    # 1. The network, its optimizer and, when resuming, where the last run stopped.
    network.to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=options.learning_rate)
    precision = extractor.precision
    record = Record(options=asdict(options), device=str(device), notes={**_notes(photos), "precision": precision})
    start = 0
    if resume:
        start, record = resume_from(
            checkpoint_file, network, optimizer, identity=identity, options=asdict(options), source=source
        )
        before = record.notes.get("precision")
        # On another machine ``auto`` may mean another precision: the record says both.
        record.notes["precision"] = precision if before in (None, precision) else f"{before}, then {precision}"
    model = _model(recipe, network, record, output.parent)

    # 2. The recipe's own loss graph at the recipe's size, over VGG19 set up as the optimization path sets it.
    graph = compile_at(recipe, extractor, *recipe_size(recipe)).graph
    recipe_weights = [style.weight for style in recipe.styles]
    autocast = extractor.autocast

    def step(iteration: int) -> dict[str, Tensor]:
        # 1. The batch: its blend, inputs and projections, from (seed, iteration) alone.
        draws = iteration_generator(seed, iteration)
        weights = training_blend(recipe_weights, draws)
        graph.set_blend(weights)
        graph.reseed_random_terms(seed * 31 + iteration)
        inputs = task.inputs(batch, size, draws, device)
        task.prepare(graph, inputs)
        blend = torch.tensor([weights], dtype=torch.float32, device=device).expand(batch, -1)
        # 2. Network, VGG19, the recipe's graph.
        with torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
            image = network(inputs, blend)
        losses = {name: value.mean() for name, value in graph(extractor(image.float(), padding=recipe.padding)).items()}
        # 3. One step on their sum.
        for group in optimizer.param_groups:
            group["lr"] = learning_rate_at(iteration, options.iterations, options.learning_rate)
        optimizer.zero_grad(set_to_none=True)
        torch.stack(list(losses.values())).sum().backward()
        optimizer.step()
        return {name: value.detach() for name, value in losses.items()}

    return run_iterations(
        step,
        start=start,
        iterations=options.iterations,
        checkpoint_every=options.checkpoint_every,
        model=model,
        optimizer=optimizer,
        record=record,
        identity=identity,
        output=output,
        checkpoint_file=checkpoint_file,
        on_iteration=on_iteration,
    )


def _check_trainable(recipe: Recipe, content_dir: Path | None, source: str) -> PhotoFolder | None:
    """The photos a transfer recipe trains on (None for a texture); every mismatch is one line."""
    if recipe.masked:
        index = next(i for i, style in enumerate(recipe.styles) if style.mask is not None)
        raise TexsynthError(
            located(source, f"styles[{index}].mask", "a feed-forward model blends its styles everywhere; remove masks")
        )
    if recipe.content is None:
        if content_dir is not None:
            raise TexsynthError(
                located(source, "content_dir", "this is a texture recipe (no content image): it trains on noise")
            )
        return None
    if content_dir is None:
        raise TexsynthError(
            located(source, "content", "this recipe has a content image: train a transfer network with --content-dir")
        )
    if recipe.preserve_colour is not PreserveColour.NONE:
        raise TexsynthError(
            located(
                source,
                "preserve_colour",
                "a transfer network is trained in colour; keep a photo's colours when applying it "
                "(texsynth apply --preserve-colour luminance)",
            )
        )
    return PhotoFolder.scan(content_dir)


def _notes(photos: PhotoFolder | None) -> dict[str, object]:
    if photos is None:
        return {}
    return {"photos": {"folder": str(photos.root), "count": len(photos.photos), "skipped": len(photos.skipped)}}


def _model(recipe: Recipe, network: torch.nn.Module, record: Record, folder: Path) -> FastModel:
    """The model as its file describes it; image paths relative to the file's ``folder`` (see Recipe.portable)."""
    weights = [style.weight for style in recipe.styles]
    portable = recipe.portable(relative_to=folder)
    return FastModel(
        network=network,
        kind="texture" if isinstance(network, TextureGenerator) else "transfer",
        styles=style_names([style.image for style in recipe.styles]),
        blend=tuple(weight / sum(weights) for weight in weights),
        recipe=portable,
        inputs={_relative(path, folder): sha256(path) for _, path in recipe.input_images()},
        training=record.data(),
    )


def _relative(path: Path, folder: Path) -> str:
    return Path(os.path.relpath(path, folder.resolve())).as_posix()
