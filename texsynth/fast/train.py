"""Training a feed-forward network from a recipe, against the recipe's own loss graph.

The loss is the optimization path's: :func:`texsynth.targets.compile_at`
builds the recipe's graph at the recipe's own output size (so the style's
features are as large on a sample as on an optimized image), and every batch
the generator's output is scored by it, re-blended to the batch's style
weights (:meth:`~texsynth.graph.LossGraph.set_blend`) and, for transfer
networks, with each photo's own content target. Nothing here computes a loss
of its own. Training crops may be smaller than the recipe's size: the
networks are convolutional and the Gram and sliced-Wasserstein statistics are
averages over positions.

The loop (Ulyanov et al. 2016; Johnson et al. 2016):

1. draw the batch's blend and inputs from (seed, iteration) alone;
2. run the network, then VGG19 (circular for tileable recipes), then the graph;
3. one Adam step on the mean loss;
4. report; every ``checkpoint_every`` iterations and at the end, write the
   model and a checkpoint atomically.

Ctrl-C (or SIGTERM) finishes the iteration in hand, writes a usable model and
checkpoint and returns ``interrupted``; a NaN or infinite loss stops the run,
keeps the last good checkpoint and raises. ``resume`` continues from the
checkpoint; on the CPU the result equals an uninterrupted run bit for bit.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._version import __version__
from ..api import output_size
from ..errors import TexsynthError, located
from ..io import sha256, writable_problem
from ..provenance import recipe_identity
from ..recipe import Recipe
from ..targets import compile_at, make_extractor
from .data import batch_noise, iteration_generator, training_blend
from .model_file import (
    MODEL_SUFFIX,
    FastModel,
    checkpoint_path,
    load_checkpoint,
    save_checkpoint,
    save_model,
    style_names,
)
from .networks import Padding, TextureGenerator


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
        long_side = max(output_size_of(recipe))
        size = self.size if self.size is not None else min(256 if cuda else 128, long_side)
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
                f"size: {size} px: training samples need sides divisible by {stride}, the generator's stride"
            )
        return options


def output_size_of(recipe: Recipe) -> tuple[int, int]:
    return recipe.output_size(None) if recipe.content is None else output_size(recipe)


@dataclass(frozen=True)
class TrainingReport:
    """One finished iteration. ``losses`` are the loss terms' batch means, still on the device."""

    iteration: int
    iterations: int
    losses: Mapping[str, Tensor]
    elapsed: float
    #: The iteration this run started after (0, or where it resumed).
    resumed_from: int = 0

    def values(self) -> dict[str, float]:
        """Loss terms as floats: a sync point, call it only when reporting."""
        values = {name: float(loss.detach()) for name, loss in self.losses.items()}
        values["total"] = sum(values.values())
        return values


@dataclass(frozen=True)
class Trained:
    path: Path
    model: FastModel
    iterations: int  # done, over all runs of this training
    interrupted: bool
    seconds: float  # this run's
    resumed_from: int = 0
    checkpoint: Path | None = None


@dataclass
class _Record:
    """What the model file says about its training: options, time, device, the loss every so often."""

    options: dict[str, Any]
    device: str
    seconds: float = 0.0
    iterations: int = 0
    history: list[dict[str, float]] = field(default_factory=list)

    def add(self, iteration: int, values: Mapping[str, float]) -> None:
        self.history.append({"iteration": iteration, **{k: round(v, 6) for k, v in values.items()}})


#: Loss values kept in a model's training record (one every iterations/HISTORY_POINTS).
HISTORY_POINTS = 100


def check_model_output(path: Path) -> Path:
    """The model path, after making sure it can be written (nothing is created)."""
    path = Path(path)
    if not path.name.endswith(MODEL_SUFFIX):
        raise TexsynthError(f"{path}: output: a model file must end in {MODEL_SUFFIX}")
    problem = writable_problem(path) or writable_problem(checkpoint_path(path))
    if problem:
        raise TexsynthError(f"{path}: output: {problem}")
    return path


def train(
    recipe: Recipe,
    *,
    output: Path,
    device: str | torch.device = "cpu",
    options: TrainingOptions = TrainingOptions(),
    resume: bool = False,
    on_iteration: Callable[[TrainingReport], None] | None = None,
    source: str = "recipe",
) -> Trained:
    """Train a texture generator for ``recipe`` (a recipe without a content image) and write it to ``output``.

    Returns the model as written. See the module docstring for the loop, its
    checkpoints, Ctrl-C and NaN handling.
    """
    device = torch.device(device)
    output = check_model_output(output)
    _check_trainable(recipe, source)
    styles = len(recipe.styles)
    padding: Padding = "circular" if recipe.tileable else "zeros"
    seed = options.seed if options.seed is not None else recipe.seed
    with torch.random.fork_rng(devices=[]):  # the initial weights from the seed, the caller's RNG untouched
        torch.manual_seed(seed)
        network = TextureGenerator(styles=styles, padding=padding)
    options = options.resolved(recipe, device, network.stride)
    checkpoint_file = checkpoint_path(output)
    identity = {"recipe": recipe_identity(recipe), "architecture": network.architecture()}

    # 1. The network, its optimizer and, when resuming, where the last run stopped.
    network.to(device)
    optimizer = torch.optim.Adam(network.parameters(), lr=options.learning_rate)
    record = _Record(options=asdict(options), device=str(device))
    start = 0
    if resume:
        start, record = _resume(checkpoint_file, network, optimizer, identity, options, source)
    model = _model(recipe, network, record)

    # 2. The recipe's own loss graph, at the recipe's size; VGG19 as the optimization path sets it up.
    extractor = make_extractor(recipe, device)
    graph = compile_at(recipe, extractor, *output_size_of(recipe)).graph
    recipe_weights = [style.weight for style in recipe.styles]
    assert options.size is not None and options.batch_size is not None and options.seed is not None
    size, batch, seed = options.size, options.batch_size, options.seed
    shapes = network.noise_shapes(size, size)
    autocast = extractor.autocast

    def step(iteration: int) -> dict[str, Tensor]:
        # 1. The batch: its blend, its noise, its projections, from (seed, iteration) alone.
        draws = iteration_generator(seed, iteration)
        weights = training_blend(recipe_weights, draws)
        graph.set_blend(weights)
        graph.reseed_random_terms(seed * 31 + iteration)
        noise = [z.to(device) for z in batch_noise(shapes, batch, draws)]
        blend = torch.tensor([weights], dtype=torch.float32, device=device).expand(batch, -1)
        # 2. Network, VGG19, the recipe's graph.
        with torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
            image = network(noise, blend)
        losses = {name: value.mean() for name, value in graph(extractor(image.float(), padding=padding)).items()}
        # 3. One step on their sum.
        optimizer.zero_grad(set_to_none=True)
        torch.stack(list(losses.values())).sum().backward()
        optimizer.step()
        return {name: value.detach() for name, value in losses.items()}

    return _loop(
        step,
        start=start,
        options=options,
        model=model,
        optimizer=optimizer,
        record=record,
        identity=identity,
        output=output,
        checkpoint_file=checkpoint_file,
        on_iteration=on_iteration,
    )


def _check_trainable(recipe: Recipe, source: str) -> None:
    if recipe.masked:
        index = next(i for i, style in enumerate(recipe.styles) if style.mask is not None)
        raise TexsynthError(
            located(source, f"styles[{index}].mask", "a feed-forward model blends its styles everywhere; remove masks")
        )
    if recipe.content is not None:
        raise TexsynthError(
            located(source, "content", "this recipe has a content image: train a transfer network with --content-dir")
        )


def _model(recipe: Recipe, network: TextureGenerator, record: _Record) -> FastModel:
    weights = [style.weight for style in recipe.styles]
    return FastModel(
        network=network,
        kind="texture",
        styles=style_names([style.image for style in recipe.styles]),
        blend=tuple(weight / sum(weights) for weight in weights),
        recipe=recipe.portable(),
        inputs={str(path): sha256(path) for _, path in recipe.input_images()},
        training=_record_data(record),
    )


def _record_data(record: _Record) -> dict[str, Any]:
    return {
        "options": record.options,
        "device": record.device,
        "seconds": round(record.seconds, 3),
        "iterations": record.iterations,
        "history": record.history,
        "texsynth": __version__,
        "torch": torch.__version__,
    }


def _resume(
    path: Path,
    network: TextureGenerator,
    optimizer: torch.optim.Optimizer,
    identity: Mapping[str, Any],
    options: TrainingOptions,
    source: str,
) -> tuple[int, _Record]:
    """Load ``path`` into the network and optimizer; the iteration it stopped at and the record so far."""
    if not path.exists():
        raise TexsynthError(f"{path}: resume: no checkpoint to resume from (train without --resume first)")
    checkpoint = load_checkpoint(path)
    state = checkpoint.state
    if state.get("identity") != identity:
        raise TexsynthError(
            located(source, "resume", f"{path} is a checkpoint of another recipe or network; choose another output")
        )
    saved = state.get("options", {})
    for name in ("batch_size", "size", "learning_rate", "seed", "checkpoint_every"):
        if saved.get(name) != getattr(options, name):
            raise TexsynthError(
                located(
                    source,
                    "resume",
                    f"{path} was trained with {name} {saved.get(name)!r}, not {getattr(options, name)!r}",
                )
            )
    network.load_state_dict(checkpoint.model.network.state_dict())
    try:
        optimizer.load_state_dict(checkpoint.optimizer_state)
    except (ValueError, KeyError, RuntimeError) as error:
        raise TexsynthError(f"{path}: resume: the optimizer state does not fit ({error})") from None
    iteration = int(state.get("iteration", 0))
    if iteration >= options.iterations:
        raise TexsynthError(
            f"{path}: resume: the checkpoint has done {iteration} iterations already; ask for more with --iterations"
        )
    record = _Record(
        options={**saved, "iterations": options.iterations},
        device=str(state.get("device", "")),
        seconds=float(state.get("seconds", 0.0)),
        iterations=iteration,
        history=list(state.get("history", [])),
    )
    return iteration, record


def _loop(
    step: Callable[[int], dict[str, Tensor]],
    *,
    start: int,
    options: TrainingOptions,
    model: FastModel,
    optimizer: torch.optim.Optimizer,
    record: _Record,
    identity: Mapping[str, Any],
    output: Path,
    checkpoint_file: Path,
    on_iteration: Callable[[TrainingReport], None] | None,
) -> Trained:
    history_every = max(1, options.iterations // HISTORY_POINTS)
    began = time.perf_counter()
    seconds_before = record.seconds
    written: Path | None = None

    def write(done: int) -> Path:
        record.iterations, record.seconds = done, seconds_before + time.perf_counter() - began
        final = replace(model, training=_record_data(record))
        save_model(output, final)
        state = {
            "identity": identity,
            "iteration": done,
            "options": record.options,
            "device": record.device,
            "seconds": record.seconds,
            "history": record.history,
        }
        return save_checkpoint(checkpoint_file, final, optimizer, state)

    done = start
    with _stop_requests() as stop:
        for iteration in range(start + 1, options.iterations + 1):
            losses = step(iteration)
            if not bool(torch.isfinite(torch.stack(list(losses.values())).sum())):
                kept = f"kept the last good checkpoint {written} (iteration {done})" if written else "wrote nothing"
                raise TexsynthError(
                    f"training: the loss became NaN or infinite at iteration {iteration} "
                    f"(try a lower --learning-rate); {kept}"
                )
            done = iteration
            if iteration % history_every == 0 or iteration == options.iterations:
                record.add(iteration, {name: float(value) for name, value in losses.items()})
            if on_iteration is not None:
                on_iteration(TrainingReport(iteration, options.iterations, losses, time.perf_counter() - began, start))
            if iteration % options.checkpoint_every == 0 or iteration == options.iterations or stop.requested:
                written = write(done)
            if stop.requested:
                break
    return Trained(
        path=output,
        model=replace(model, training=_record_data(record), path=output, sha256=sha256(output)),
        iterations=done,
        interrupted=done < options.iterations,
        seconds=time.perf_counter() - began,
        resumed_from=start,
        checkpoint=written,
    )


class _StopRequest:
    requested = False


@contextlib.contextmanager
def _stop_requests() -> Iterator[_StopRequest]:
    """Ctrl-C and SIGTERM ask the loop to stop after the iteration in hand (a second Ctrl-C stops at once).

    Stopping between iterations keeps the weights and the optimizer's state
    consistent, so the model written then is usable and the checkpoint resumable.
    """
    request = _StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def ask(signum: int, frame: Any) -> None:
        if request.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        request.requested = True

    previous = {number: signal.signal(number, ask) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield request
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
