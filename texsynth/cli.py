"""The ``texsynth`` command: thin typer commands over the Python API.

Each command parses its options, calls one API function and shows progress
with rich. Any :class:`TexsynthError` becomes one line on stderr and exit code
2; Ctrl-C saves the best image so far and exits with 130.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from functools import wraps
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from . import __version__
from .api import check_output, pick_device, render
from .errors import TexsynthError
from .optimize import Progress as StepProgress
from .sources import DEFAULT_OUT_DIR, open_recipe
from .watch import Frames, LossTrace, Preview, chain, frames_folder, trace_path

app = typer.Typer(
    name="texsynth",
    help="Neural texture synthesis, style transfer and style blending from YAML recipes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

F = TypeVar("F", bound=Callable[..., Any])
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def _stderr() -> Console:
    return Console(stderr=True, highlight=False)


def fail_cleanly(command: F) -> F:
    """Turn a TexsynthError into one line on stderr and exit code 2."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except TexsynthError as error:
            typer.echo(f"error: {error}", err=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None

    return wrapper  # type: ignore[return-value]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"texsynth {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Neural texture synthesis, style transfer and style blending from YAML recipes."""


def parse_size(text: str) -> int | list[int]:
    """``"256"`` -> 256 (long side); ``"320x200"`` -> [320, 200] (width, height)."""
    parts = text.lower().split("x")
    if len(parts) in (1, 2) and all(part.strip().isdigit() for part in parts):
        sides = [int(part) for part in parts]
        return sides[0] if len(sides) == 1 else sides
    raise TexsynthError(f"--size: must be a long side like 256 or WIDTHxHEIGHT like 320x200, got {text!r}")


def parse_numbers(option: str, text: str) -> float | list[float]:
    """``"0.5"`` -> 0.5; ``"0.5,2"`` -> [0.5, 2.0] (one per style, in order)."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise TexsynthError(f"{option}: must be a number like 0.5, or one per style like 0.5,2; got {text!r}") from None
    return values[0] if len(values) == 1 else values


def parse_layers(option: str, text: str) -> dict[str, float]:
    """``"relu4_2"`` -> {relu4_2: 1.0}; ``"relu1_1,relu2_1:0.5"`` -> {relu1_1: 1.0, relu2_1: 0.5}."""
    layers = {}
    for part in text.split(","):
        name, _, weight = part.strip().partition(":")
        try:
            layers[name] = float(weight) if weight else 1.0
        except ValueError:
            raise TexsynthError(f"{option}: must be layers like relu4_2 or relu1_1:1,relu2_1:0.5; got {text!r}") from None
    return layers


def _masks(text: str) -> str | list[str | None]:
    """``--style-mask``: one path for every style, or one per style where ``none`` leaves that style unmasked."""
    masks = [None if part.strip().lower() in ("", "none") else _absolute(Path(part.strip())) for part in text.split(",")]
    return masks[0] if len(masks) == 1 else masks


def _absolute(path: Path | None) -> str | None:
    return str(path.expanduser().resolve()) if path is not None else None


CONTROLS = "Controls (override the recipe)"
WATCHING = "Watching the run"


def _control(help: str) -> Any:
    """A --option in the help's Controls panel; its value is passed as a recipe override."""
    return typer.Option(help=help, rich_help_panel=CONTROLS)


@app.command("recipe")
@fail_cleanly
def recipe_command(
    file: Annotated[
        Path,
        typer.Argument(
            help="A recipe (.yaml), a bundle (.texsynth.zip) or an output image to make again.", show_default=False
        ),
    ],
    output: Annotated[
        Optional[Path],
        typer.Option("-o", "--output", help="Write the image here (.png, .jpg or .webp) instead of the recipe's output."),
    ] = None,
    size: Annotated[
        Optional[str], typer.Option(help="Output long side in px (e.g. 512) or WIDTHxHEIGHT (e.g. 640x360).")
    ] = None,
    steps: Annotated[Optional[int], typer.Option(help="Optimizer steps (overrides the recipe).")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed (overrides the recipe).")] = None,
    device: Annotated[
        Optional[str], typer.Option(help="cpu, cuda or mps. Default: CUDA if available, else MPS, else CPU.")
    ] = None,
    weights: Annotated[
        Optional[Path],
        typer.Option(help="A torchvision vgg19 state dict to use instead of the shipped Caffe VGG19 weights."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the effective recipe (all defaults filled in) and exit.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar and no summary line.")] = False,
    out_dir: Annotated[
        Path,
        typer.Option(
            help="For bundles and images: the folder the output goes in (a bundle cannot write outside it)."
        ),
    ] = DEFAULT_OUT_DIR,
    preserve_colour: Annotated[
        Optional[str],
        _control(
            "Keep the content's colours: none, luminance (transfer on luminance only) or histogram "
            "(style recoloured to the content's palette first)."
        ),
    ] = None,
    init: Annotated[
        Optional[str], _control("Starting image: noise, content, image (see --init-image) or style_mean.")
    ] = None,
    init_image: Annotated[Optional[Path], _control("Start from this image (implies --init image).")] = None,
    style_scale: Annotated[
        Optional[str],
        _control(
            "Style image size relative to the output: 2 makes its features twice as large, 0.5 half. "
            "One value for every style, or one per style: 0.5,2."
        ),
    ] = None,
    style_mask: Annotated[
        Optional[str],
        _control(
            "Where each style applies: a mask image (white = here) for every style, or one per style: "
            "left.png,none. Needs the Gram style loss."
        ),
    ] = None,
    style_weight: Annotated[Optional[float], _control("Weight of the style term.")] = None,
    style_layers: Annotated[Optional[str], _control("Style layers and weights, e.g. relu1_1,relu2_1,relu3_1:0.5.")] = None,
    content_weight: Annotated[Optional[float], _control("Weight of the content term.")] = None,
    content_layers: Annotated[
        Optional[str], _control("Content layers and weights, e.g. relu4_2 or relu3_2:1,relu4_2:1.")
    ] = None,
    tv_weight: Annotated[Optional[float], _control("Total-variation weight (smooths pixel noise).")] = None,
    pooling: Annotated[Optional[str], _control("VGG pooling: max or avg.")] = None,
    tileable: Annotated[
        Optional[bool],
        typer.Option("--tileable/--no-tileable", help="Make the output wrap around without a seam.", rich_help_panel=CONTROLS),
    ] = None,
    scales: Annotated[
        Optional[str], _control("Coarse-to-fine scales: auto, or a number (1 = off).")
    ] = None,
    style_loss: Annotated[
        Optional[str], _control("Style loss: auto (textures: gram+sliced_wasserstein; transfers: gram), gram, sliced_wasserstein or gram+sliced_wasserstein.")
    ] = None,
    precision: Annotated[Optional[str], _control("Convolution arithmetic: auto, fp32 or bf16.")] = None,
    save_every: Annotated[
        Optional[int],
        typer.Option(help="Write every N-th step as a numbered PNG into the frames folder.", rich_help_panel=WATCHING),
    ] = None,
    frames: Annotated[
        Optional[Path],
        typer.Option(help="Folder for --save-every frames. Default: beside the output, OUT.frames/.", rich_help_panel=WATCHING),
    ] = None,
    preview: Annotated[
        Optional[Path],
        typer.Option(help="Keep this image updated during the run, to watch in an image viewer.", rich_help_panel=WATCHING),
    ] = None,
    trace: Annotated[
        bool,
        typer.Option(
            "--trace/--no-trace", help="Write the loss per step as JSON lines beside the output (OUT.trace.jsonl).",
            rich_help_panel=WATCHING,
        ),
    ] = True,
) -> None:
    """Run a recipe and write the image it names.

    Without a content image the recipe synthesizes a texture; with one it is a
    style transfer. Command-line options override the recipe's fields. Paths in
    the recipe are relative to the recipe file; paths given here, to the current
    folder. A bundle runs from a private unpacked copy and writes under
    --out-dir; an output image runs the recipe embedded in it again (written to
    --out-dir as NAME.rerun.png), warning about any input that has changed.
    """
    overrides = {
        "size": parse_size(size) if size is not None else None,
        "steps": steps,
        "seed": seed,
        "output": _absolute(output),
        "weights": _absolute(weights),
        "preserve_colour": preserve_colour,
        "init": init if init is not None or init_image is None else "image",
        "init_image": _absolute(init_image),
        "styles.scale": parse_numbers("--style-scale", style_scale) if style_scale is not None else None,
        "styles.mask": _masks(style_mask) if style_mask is not None else None,
        "style_weight": style_weight,
        "style_layers": parse_layers("--style-layers", style_layers) if style_layers is not None else None,
        "content.weight": content_weight,
        "content.layers": parse_layers("--content-layers", content_layers) if content_layers is not None else None,
        "tv_weight": tv_weight,
        "pooling": pooling,
        "tileable": tileable,
        "scales": int(scales) if scales is not None and scales.isdigit() else scales,
        "style_loss": style_loss,
        "precision": precision,
    }
    with ExitStack() as stack:
        opened = stack.enter_context(open_recipe(file, overrides=overrides, out_dir=out_dir))
        recipe = opened.recipe
        chosen = pick_device(device)
        if opened.made_on is not None and opened.made_on != str(chosen):
            opened.warnings.append(f"{file} was made on {opened.made_on}, this run is on {chosen}; pixels may differ")
        for warning in opened.warnings:
            typer.echo(f"warning: {warning}", err=True)  # not rich: a path must not be wrapped
        if dry_run:
            typer.echo(f"# device: {chosen}")
            typer.echo(recipe.to_yaml(), nl=False)
            return
        output = check_output(recipe, opened.source)
        watchers = [
            stack.enter_context(LossTrace(trace_path(output))) if trace else None,
            Frames(frames or frames_folder(output), save_every) if save_every is not None else None,
            Preview(preview.expanduser().resolve()) if preview is not None else None,
        ]
        on_step = chain(stack.enter_context(_progress_bar(quiet, recipe.steps)), *watchers)
        rendered = render(recipe, device=chosen, on_step=on_step, source=opened.source, origin=opened.origin)
    synthesis = rendered.synthesis
    losses = ", ".join(f"{name} {value:.4g}" for name, value in synthesis.losses.items())
    if synthesis.interrupted:
        _stderr().print(
            f"interrupted after {synthesis.steps} steps: saved the best image so far to {rendered.path}"
        )
        raise typer.Exit(EXIT_INTERRUPTED)
    if not quiet:
        _stderr().print(
            f"wrote {rendered.path} ({synthesis.image.shape[-1]}x{synthesis.image.shape[-2]}, "
            f"{synthesis.steps} steps on {synthesis.device} in {synthesis.seconds:.1f}s; {losses})"
        )


@contextmanager
def _progress_bar(quiet: bool, steps: int) -> Iterator[Callable[[StepProgress], None] | None]:
    """A rich progress bar fed by the optimizer's callback; loss values refresh a few times a second."""
    if quiet:
        yield None
        return
    bar = Progress(
        TextColumn("[bold]synthesizing"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[losses]}"),
        console=_stderr(),
        transient=False,
    )
    task = bar.add_task("synthesizing", total=steps, losses="")
    last_values = 0.0

    def on_step(progress: StepProgress) -> None:
        nonlocal last_values
        # Started on the first step, so an input error found before the loop prints alone.
        if not bar.live.is_started:
            bar.start()
        fields: dict[str, Any] = {}
        now = time.monotonic()
        # Reading losses syncs the GPU, so do it only a few times a second.
        if now - last_values > 0.25 or progress.step == progress.steps:
            last_values = now
            fields["losses"] = "  ".join(f"{name} {value:.4g}" for name, value in progress.values().items())
        bar.update(task, completed=progress.step, **fields)

    try:
        yield on_step
    finally:
        bar.stop()


def main(argv: list[str] | None = None) -> None:
    """Console entry point: click's own usage errors also become one line and exit code 2."""
    try:
        code = app(args=argv, prog_name="texsynth", standalone_mode=False)
    except typer.TyperException as error:  # click's usage errors
        if type(error).__name__ == "NoArgsIsHelpError":
            typer.echo(error.format_message())
        else:
            typer.echo(f"error: {error.format_message()}", err=True)
        sys.exit(error.exit_code)
    except (typer.Abort, KeyboardInterrupt):
        sys.exit(EXIT_INTERRUPTED)
    sys.exit(code if isinstance(code, int) else 0)


# Imported last: these commands register themselves on ``app`` with ``fail_cleanly``.
from . import cli_share, cli_tiles  # noqa: E402,F401

if __name__ == "__main__":
    main()

