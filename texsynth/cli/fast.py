"""The feed-forward commands: ``train`` (a network from a recipe), ``sample`` (textures), ``apply`` (photos),
``export`` (ONNX).

Thin like the rest of the CLI: options are checked and parsed here, the work
is done by :mod:`texsynth.fast`; ``cli/__init__.py`` registers them. ``show``
of a model file is here too (``share.show_command`` hands model files over).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import yaml

from ..api import pick_device
from ..errors import TexsynthError, one_line, said
from ..fast.apply import MIN_TILE, apply_to_files
from ..fast.export import check_onnx_output, export_onnx
from ..fast.loop import TrainingReport
from ..fast.model_file import MODEL_SUFFIX, load_model
from ..fast.sample import sample_folder
from ..fast.train import TrainingOptions, train
from ..io import read_metadata
from ..provenance import FEED_FORWARD_COMMANDS
from ..recipe import PreserveColour
from ..sources import DEFAULT_OUT_DIR, open_recipe
from ..tile_folder import folder_problem
from .common import (
    FLAG,
    at_least,
    checked_device,
    interrupted_exit_code,
    not_an_input,
    output_file,
    parse_size,
    stderr_console,
)
from .progress import VALUES_EVERY, bar, loss_text


def train_command(
    recipe: Annotated[Path, typer.Argument(help="The recipe (.yaml), bundle or output image to train on.")],
    output: Annotated[Path, typer.Option("-o", "--output", help=f"The model file to write ({MODEL_SUFFIX}).")],
    iterations: Annotated[Optional[int], typer.Option(help="Training iterations (default 2000).")] = None,
    batch_size: Annotated[
        Optional[int], typer.Option(help="Samples per iteration (default: 8 on CUDA, 4 else).")
    ] = None,
    size: Annotated[
        Optional[int], typer.Option(help="Long side of the training samples in px (default: 256 on CUDA, 128 else).")
    ] = None,
    learning_rate: Annotated[Optional[float], typer.Option(help="Adam's step size (default 0.002).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Seed of the training draws (default: the recipe's).")] = None,
    device: Annotated[
        Optional[str], typer.Option(help="cpu, cuda or mps. Default: CUDA if available, else MPS, else CPU.")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue from OUTPUT's checkpoint where it stopped.", metavar=FLAG)
    ] = False,
    checkpoint_every: Annotated[
        Optional[int], typer.Option(help="Write the model and a checkpoint every N iterations (default 250).")
    ] = None,
    content_dir: Annotated[
        Optional[Path],
        typer.Option(help="Photos to train a transfer network on (jpg, png, webp; searched recursively)."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no summary.", metavar=FLAG)] = False,
) -> None:
    """Train a network for a recipe, against the recipe's own losses, and write it as a model file.

    A texture recipe trains a generator (texsynth sample makes tiles with it);
    a recipe with a content image trains a transfer network on random crops of
    the photos under --content-dir (texsynth apply stylizes photos with it).

    Checkpoints (OUTPUT.checkpoint.safetensors) are written every
    --checkpoint-every iterations and at the end; --resume continues from one.
    Ctrl-C writes a usable model and its checkpoint, and exits with 130.
    """
    for option, value in (("--iterations", iterations), ("--batch-size", batch_size), ("--size", size)):
        at_least(option, value)
    at_least("--checkpoint-every", checkpoint_every)
    if learning_rate is not None and not (math.isfinite(learning_rate) and learning_rate > 0):
        raise TexsynthError(f"--learning-rate: must be a number > 0, got {learning_rate}")
    if seed is not None and seed < 0:
        raise TexsynthError(f"--seed: must be 0 or more, got {seed}")
    checked_device(device)
    given: dict[str, Any] = {
        "iterations": iterations,
        "batch_size": batch_size,
        "size": size,
        "learning_rate": learning_rate,
        "seed": seed,
        "checkpoint_every": checkpoint_every,
    }
    options = TrainingOptions(**{name: value for name, value in given.items() if value is not None})
    with open_recipe(recipe, out_dir=DEFAULT_OUT_DIR) as opened:
        chosen = pick_device(device)
        with _training_bar(quiet) as on_iteration:
            trained = train(
                opened.recipe,
                output=output,
                device=chosen,
                options=options,
                content_dir=content_dir,
                resume=resume,
                on_iteration=on_iteration,
                source=opened.source,
            )
    seconds = trained.model.training.get("seconds", trained.seconds)
    if trained.interrupted:
        stderr_console().print(
            f"interrupted after {trained.iterations} iterations: wrote a usable model to {trained.path}; "
            f"continue with --resume"
        )
        raise typer.Exit(interrupted_exit_code())
    if not quiet:
        history = trained.model.training.get("history") or [{}]
        losses = ", ".join(f"{name} {value:.4g}" for name, value in history[-1].items() if name != "iteration")
        photos = trained.model.training.get("photos")
        seen = f"; {photos['count']} photos, {photos['skipped']} unreadable files skipped" if photos else ""
        stderr_console().print(
            f"wrote {trained.path} ({trained.iterations} iterations on {chosen} in {_duration(seconds)}; "
            f"{losses}{seen})"
        )


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}:{rest:02d}" if minutes else f"{seconds:.1f} s"


@contextmanager
def _training_bar(quiet: bool) -> Iterator[Callable[[TrainingReport], None] | None]:
    """iteration / total, iterations per second, elapsed, ETA and the loss terms."""
    if quiet:
        yield None
        return
    progress = bar("training", before=("rate",), after=("losses",))
    task: Any = None
    last_values = 0.0

    def on_iteration(report: TrainingReport) -> None:
        nonlocal task, last_values
        if task is None:
            task = progress.add_task(
                "training", total=report.iterations, completed=report.resumed_from, rate="", losses=""
            )
            progress.start()
        fields: dict[str, Any] = {}
        now = time.monotonic()
        if now - last_values > VALUES_EVERY or report.iteration == report.iterations:
            last_values = now
            done = report.iteration - report.resumed_from
            fields = {"losses": loss_text(report.values()), "rate": f"{done / max(report.elapsed, 1e-9):.2f} it/s"}
        progress.update(task, completed=report.iteration, **fields)

    try:
        yield on_iteration
    finally:
        progress.stop()


def parse_blend(text: str) -> dict[str, float]:
    """``"starry_night:0.3,the_scream:0.7"`` -> {starry_night: 0.3, the_scream: 0.7}; each weight > 0."""
    blend: dict[str, float] = {}
    for part in text.split(","):
        name, colon, weight = part.strip().rpartition(":")
        try:
            value = float(weight)
        except ValueError:
            value = math.nan
        if not colon or not name or not (math.isfinite(value) and value > 0):
            raise TexsynthError(f"--blend: must be style:weight pairs with weights > 0, like a:0.3,b:0.7; got {text!r}")
        if name in blend:
            raise TexsynthError(f"--blend: {name!r} is named twice")
        blend[name] = value
    return blend


def sample_command(
    model: Annotated[Path, typer.Argument(help=f"A texture model ({MODEL_SUFFIX}) made by texsynth train.")],
    count: Annotated[int, typer.Option(help="How many samples (indices 0 to COUNT-1).")],
    out: Annotated[Path, typer.Option(help="Output folder: one PNG per sample, manifest.json, contact-sheet.png.")],
    size: Annotated[
        Optional[str], typer.Option(help="Long side (e.g. 512) or WIDTHxHEIGHT; default: the recipe's size.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Sample i's seed derives from this and i.")] = 0,
    blend: Annotated[
        Optional[str], typer.Option(help="Style weights, e.g. starry_night:0.3,the_scream:0.7 (default: the recipe's).")
    ] = None,
    batch_size: Annotated[
        Optional[int], typer.Option(help="Samples per forward pass on a GPU (default 64); the CPU makes one at a time.")
    ] = None,
    device: Annotated[
        Optional[str], typer.Option(help="cpu, cuda or mps. Default: CUDA if available, else MPS, else CPU.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Replace another model's samples found in the folder.", metavar=FLAG)
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no summary.", metavar=FLAG)] = False,
) -> None:
    """Make COUNT textures from a trained model, each in one forward pass, into a folder like texsynth batch.

    Sample i is the same image whatever batch makes it (on one device). Run
    the same command again to finish an interrupted folder: samples already
    there are skipped.
    """
    at_least("--count", count)
    at_least("--batch-size", batch_size)
    if seed < 0:
        raise TexsynthError(f"--seed: must be 0 or more, got {seed}")
    checked_device(device)
    weights = parse_blend(blend) if blend is not None else None
    sides = parse_size(size) if size is not None else None
    problem = folder_problem(out)
    if problem:
        raise TexsynthError(f"--out: {problem}")
    chosen = pick_device(device)
    width, height = (sides, sides) if isinstance(sides, int) else sides or (None, None)
    counter = _SampleCounter(show=not quiet, total=count)
    try:
        report = sample_folder(
            model,
            out=out,
            count=count,
            width=width,
            height=height,
            seed=seed,
            blend=weights,
            device=chosen,
            batch_size=batch_size,
            force=force,
            on_sample=counter,
        )
    finally:
        counter.stop()
    if not quiet:
        each = f"; {1000 * report.seconds / len(report.made):.0f} ms a sample" if report.made else ""
        stderr_console().print(
            f"{out}: made {len(report.made)} samples ({report.width}x{report.height}), "
            f"{len(report.skipped)} already there, "
            f"on {chosen} in {report.seconds:.1f} s{each}"
        )


class _SampleCounter:
    """A bar of samples or photos done / total, per second, ETA."""

    def __init__(self, *, show: bool, total: int, label: str = "sampling", unit: str = "samples") -> None:
        self.bar = bar(label, before=("rate",)) if show else None
        self.task = self.bar.add_task(label, total=total, rate="") if self.bar is not None else None
        self.started = time.monotonic()
        self.count = 0
        self.unit = unit

    def __call__(self, done: object) -> None:
        self.count += 1
        if self.bar is None or self.task is None:
            return
        if not self.bar.live.is_started:
            self.bar.start()
        seconds = max(time.monotonic() - self.started, 1e-9)
        self.bar.update(self.task, advance=1, rate=f"{self.count / seconds:.1f} {self.unit}/s")

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def is_model_file(path: Path) -> bool:
    return Path(path).name.endswith(MODEL_SUFFIX)


def show_model(path: Path, *, as_json: bool) -> None:
    """What a model file says about itself: YAML comments, then the recipe it was trained from.

    As for images (:func:`texsynth.provenance.runnable_yaml`), every value from the file
    goes into a comment through :func:`~texsynth.errors.said`, cut short and escaped so it
    cannot end its line, and the recipe is written without any ``output`` field, so
    ``texsynth show MODEL > recipe.yaml`` means only what the trained recipe says.
    """
    model = load_model(path)
    facts = model.describe()
    if as_json:
        typer.echo(json.dumps(facts, indent=2))
        return
    training = model.training
    history = training.get("history") if isinstance(training.get("history"), list) else []
    last = history[-1] if history and isinstance(history[-1], dict) else {}
    blend = ", ".join(f"{said(name)} {weight:.3g}" for name, weight in zip(model.styles, model.blend))
    precision = f" ({said(training['precision'])})" if "precision" in training else ""
    lines = [
        said(str(path), 500),
        f"a {model.kind} model ({said(facts['architecture'].get('kind'))}) made by texsynth "
        f"{said(model.versions.get('texsynth'))}, torch {said(model.versions.get('torch'))}; sha256 {model.sha256}",
        f"styles: {blend} (the default blend; --blend picks others)",
        f"architecture: {said(json.dumps(facts['architecture']), 500)}",
        f"trained {said(training.get('iterations'))} iterations on {said(training.get('device'))}{precision} in "
        f"{said(training.get('seconds'))} s: {said(json.dumps(training.get('options')), 500)}",
        "final losses: " + ", ".join(f"{said(k)} {said(v)}" for k, v in last.items() if k != "iteration"),
        "inputs:",
        *(f"  {said(name, 500)}  sha256 {said(digest)}" for name, digest in model.inputs.items()),
    ]
    typer.echo("\n".join(f"# {line}" for line in lines))
    recipe = {key: value for key, value in model.recipe.items() if key != "output"}
    typer.echo(yaml.safe_dump(recipe, sort_keys=False), nl=False)


def show_feed_forward_output(path: Path, *, as_json: bool) -> bool:
    """``show`` of a sample or a stylized photo: the model, settings and input that made it (False: not one)."""
    meta = read_metadata(path)
    if meta is None or meta.get("made_by") not in FEED_FORWARD_COMMANDS:
        return False
    if as_json:
        typer.echo(json.dumps(meta, indent=2))
        return True
    model: dict[str, Any] = meta["model"] if isinstance(meta.get("model"), dict) else {}
    settings = {
        key: meta.get(key) for key in ("blend", "size", "seed", "input", "preserve_colour", "tile") if key in meta
    }
    lines = [
        said(str(path), 500),
        f"made by texsynth {said(meta.get('made_by'))} (texsynth {said(meta.get('texsynth'))}, "
        f"torch {said(meta.get('torch'))}, on {said(meta.get('device'))})",
        f"model: {said(model.get('path'), 500)}  sha256 {said(model.get('sha256'))}",
        f"settings: {said(json.dumps(settings, default=str), 500)}",
        "the recipe the model was trained from:",
    ]
    typer.echo("\n".join(f"# {line}" for line in lines))
    recipe: dict[str, Any] = model["recipe"] if isinstance(model.get("recipe"), dict) else {}
    typer.echo(yaml.safe_dump({k: v for k, v in recipe.items() if k != "output"}, sort_keys=False), nl=False)
    return True


def apply_command(
    model: Annotated[Path, typer.Argument(help=f"A transfer model ({MODEL_SUFFIX}) made by texsynth train.")],
    photos: Annotated[list[Path], typer.Argument(help="Photos to stylize (jpg, png, webp, ...).", show_default=False)],
    output: Annotated[
        Optional[Path], typer.Option("-o", "--output", help="For one photo: the file to write (.png, .jpg, .webp).")
    ] = None,
    out: Annotated[
        Optional[Path], typer.Option(help="For several photos: the folder, one PHOTO-NAME.png each.")
    ] = None,
    blend: Annotated[
        Optional[str], typer.Option(help="Style weights, e.g. starry_night:0.7,the_scream:0.3 (default: the recipe's).")
    ] = None,
    preserve_colour: Annotated[
        str,
        typer.Option(
            help="luminance keeps the photo's colours; none paints it in the styles'.", metavar="[none|luminance]"
        ),
    ] = "none",
    tile: Annotated[
        Optional[int], typer.Option(help="Stylize in overlapping tiles of this side (automatic above ~4 megapixels).")
    ] = None,
    batch_size: Annotated[
        Optional[int], typer.Option(help="Photos of one size per forward pass on a GPU (default 64).")
    ] = None,
    device: Annotated[
        Optional[str], typer.Option(help="cpu, cuda or mps. Default: CUDA if available, else MPS, else CPU.")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no summary.", metavar=FLAG)] = False,
) -> None:
    """Stylize photos with a trained transfer network, each in one forward pass, at exactly its own size."""
    at_least("--batch-size", batch_size)
    at_least("--tile", tile, MIN_TILE)
    checked_device(device)
    if preserve_colour not in ("none", "luminance"):
        raise TexsynthError(f"--preserve-colour: must be none or luminance, got {preserve_colour!r}")
    if output is not None and out is not None:
        raise TexsynthError("-o/--output and --out: give one (a file for one photo, a folder for several)")
    if output is None and out is None:
        raise TexsynthError("--out: give a folder for the results (or -o FILE for one photo)")
    if output is None and out is not None:
        problem = folder_problem(out)
        if problem:
            raise TexsynthError(f"--out: {problem}")
    weights = parse_blend(blend) if blend is not None else None
    chosen = pick_device(device)
    counter = _SampleCounter(show=not quiet, total=len(photos), label="stylizing", unit="photos")
    try:
        applied = apply_to_files(
            model,
            photos,
            out_dir=out,
            output=output,
            blend=weights,
            preserve_colour=PreserveColour(preserve_colour),
            tile=tile,
            device=chosen,
            batch_size=batch_size,
            on_photo=counter,
        )
    finally:
        counter.stop()
    if not quiet:
        where = applied.outputs[0] if output is not None else out
        each = 1000 * applied.seconds / max(len(applied.outputs), 1)
        stderr_console().print(
            f"wrote {where} ({len(applied.outputs)} photos on {chosen} in {applied.seconds:.1f} s; "
            f"{each:.0f} ms a photo)"
        )


def export_command(
    model: Annotated[Path, typer.Argument(help=f"A transfer model ({MODEL_SUFFIX}) made by texsynth train.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="The ONNX file to write (.onnx).")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No summary.", metavar=FLAG)] = False,
) -> None:
    """Write a transfer model as ONNX, for other runtimes; the style weights stay an input.

    Inputs: photo (N, 3, H, W) RGB in [0, 1], H and W multiples of 4, and blend
    (N, STYLES), one weight per style in the order of the file's styles
    metadata. Output: stylized (N, 3, H, W) in [0, 1].
    """
    target = check_onnx_output(output_file("-o", output))
    not_an_input("-o", target, [("MODEL", model)])
    loaded = load_model(model)
    written = export_onnx(loaded, target)
    if not quiet:
        # The style names come from the model file: data, printed as it is, one line.
        typer.echo(one_line(f"wrote {written} (styles {', '.join(loaded.styles)}; inputs photo and blend)"), err=True)
