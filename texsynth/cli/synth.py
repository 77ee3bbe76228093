"""``texsynth recipe``: run one recipe (a YAML file, a bundle or an output image) and write its image."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..api import check_output, input_fields, pick_device, render, resolved_precision
from ..errors import TexsynthError, one_line
from ..files import resolved
from ..recipe import Init, Pooling, Precision, PreserveColour, StyleLoss
from ..sources import DEFAULT_OUT_DIR, open_recipe
from ..watch import (
    DEFAULT_PREVIEW_INTERVAL,
    Frames,
    LossTrace,
    Preview,
    chain,
    default_preview_path,
    frames_folder,
    preview_problem,
    trace_path,
)
from .common import (
    FLAG,
    absolute,
    at_least,
    checked_device,
    choices,
    in_terminal,
    interrupted_exit_code,
    not_an_input,
    parse_layers,
    parse_numbers,
    parse_scales,
    parse_size,
    stderr_console,
    warn,
)
from .progress import step_bar


def _default_preview(output: Path, stack: ExitStack) -> Preview | None:
    """A terminal session's preview beside ``output``, removed when the run ends, however it ends.

    None where a file is in its place already (someone's, or a preview that a
    killed run left): a default never clobbers anything.
    """
    path = default_preview_path(output)
    if path.exists() or path.is_symlink() or preview_problem(path):
        return None
    stack.callback(path.unlink, missing_ok=True)
    typer.echo(f"preview: {one_line(str(path))} (updated every few seconds; --no-preview: none)", err=True)
    return Preview(path, interval=DEFAULT_PREVIEW_INTERVAL)


def _masks(text: str) -> str | list[str | None] | None:
    """``--style-mask``: one path for every style, or one per style where ``none`` leaves that style unmasked."""
    masks = [
        None if part.strip().lower() in ("", "none") else absolute("--style-mask", Path(part.strip()))
        for part in text.split(",")
    ]
    return masks[0] if len(masks) == 1 else masks


CONTROLS = "Controls (override the recipe)"
WATCHING = "Watching the run"


def _control(help: str, **options: Any) -> Any:
    """A --option in the help's Controls panel; its value is passed as a recipe override."""
    return typer.Option(help=help, rich_help_panel=CONTROLS, **options)


def recipe_command(
    file: Annotated[
        Path,
        typer.Argument(
            help="A recipe (.yaml), a bundle (.texsynth.zip) or an output image to make again.", show_default=False
        ),
    ],
    output: Annotated[
        Optional[Path],
        typer.Option(
            "-o", "--output", help="Write the image here (.png, .jpg or .webp) instead of the recipe's output."
        ),
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
        bool,
        typer.Option("--dry-run", help="Print the effective recipe (all defaults filled in) and exit.", metavar=FLAG),
    ] = False,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="No progress bar and no summary line.", metavar=FLAG)
    ] = False,
    out_dir: Annotated[
        Path,
        typer.Option(help="For bundles and images: the folder the output goes in (a bundle cannot write outside it)."),
    ] = DEFAULT_OUT_DIR,
    preserve_colour: Annotated[
        Optional[str],
        _control(
            "Keep the content's colours: none, luminance (transfer on luminance only) or histogram "
            "(style recoloured to the content's palette first).",
            metavar=choices(PreserveColour),
        ),
    ] = None,
    init: Annotated[
        Optional[str],
        _control("Starting image: noise, content, image (see --init-image) or style_mean.", metavar=choices(Init)),
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
    style_layers: Annotated[
        Optional[str], _control("Style layers and weights, e.g. relu1_1,relu2_1,relu3_1:0.5.")
    ] = None,
    content_weight: Annotated[Optional[float], _control("Weight of the content term.")] = None,
    content_layers: Annotated[
        Optional[str], _control("Content layers and weights, e.g. relu4_2 or relu3_2:1,relu4_2:1.")
    ] = None,
    tv_weight: Annotated[Optional[float], _control("Total-variation weight (smooths pixel noise).")] = None,
    pooling: Annotated[Optional[str], _control("VGG pooling: max or avg.", metavar=choices(Pooling))] = None,
    tileable: Annotated[
        Optional[bool],
        typer.Option(
            "--tileable/--no-tileable",
            help="Make the output wrap around without a seam.",
            rich_help_panel=CONTROLS,
            metavar=FLAG,
        ),
    ] = None,
    scales: Annotated[Optional[str], _control("Coarse-to-fine scales: auto, or a number (1 = off).")] = None,
    style_loss: Annotated[
        Optional[str],
        _control(
            "Style loss: auto (textures: gram+sliced_wasserstein; transfers: gram), gram, sliced_wasserstein "
            "or gram+sliced_wasserstein.",
            metavar=choices(StyleLoss),
        ),
    ] = None,
    precision: Annotated[
        Optional[str], _control("Convolution arithmetic: auto, fp32 or bf16.", metavar=choices(Precision))
    ] = None,
    save_every: Annotated[
        Optional[int],
        typer.Option(help="Write every N-th step as a numbered PNG into the frames folder.", rich_help_panel=WATCHING),
    ] = None,
    frames: Annotated[
        Optional[Path],
        typer.Option(
            help="Folder for --save-every frames. Default: beside the output, OUT.frames/.", rich_help_panel=WATCHING
        ),
    ] = None,
    preview: Annotated[
        Optional[Path],
        typer.Option(
            help="Keep this image updated during the run, to watch in an image viewer. Default in a terminal: "
            "OUT.preview.png beside the output, every few seconds, removed when the run ends.",
            rich_help_panel=WATCHING,
        ),
    ] = None,
    no_preview: Annotated[
        bool,
        typer.Option(
            "--no-preview", help="No preview image, not even in a terminal.", rich_help_panel=WATCHING, metavar=FLAG
        ),
    ] = False,
    trace: Annotated[
        bool,
        typer.Option(
            "--trace/--no-trace",
            help="Write the loss per step as JSON lines beside the output (OUT.trace.jsonl).",
            rich_help_panel=WATCHING,
            metavar=FLAG,
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
    at_least("--save-every", save_every)
    checked_device(device)
    out_dir = resolved(out_dir, "--out-dir")
    if preview is not None:
        preview = resolved(preview, "--preview")
        if preview_problem(preview):
            raise TexsynthError(f"--preview: {preview_problem(preview)}")
    overrides = {
        "size": parse_size(size) if size is not None else None,
        "steps": steps,
        "seed": seed,
        "output": absolute("--output", output),
        "weights": absolute("--weights", weights),
        "preserve_colour": preserve_colour,
        "init": init if init is not None or init_image is None else "image",
        "init_image": absolute("--init-image", init_image),
        "styles.scale": parse_numbers("--style-scale", style_scale) if style_scale is not None else None,
        "styles.mask": _masks(style_mask) if style_mask is not None else None,
        "style_weight": style_weight,
        "style_layers": parse_layers("--style-layers", style_layers) if style_layers is not None else None,
        "content.weight": content_weight,
        "content.layers": parse_layers("--content-layers", content_layers) if content_layers is not None else None,
        "tv_weight": tv_weight,
        "pooling": pooling,
        "tileable": tileable,
        "scales": parse_scales(scales) if scales is not None else None,
        "style_loss": style_loss,
        "precision": precision,
    }
    watching: Preview | None = None
    with ExitStack() as stack:
        opened = stack.enter_context(open_recipe(file, overrides=overrides, out_dir=out_dir))
        recipe = opened.recipe
        chosen = pick_device(device)
        if opened.made_on is not None and opened.made_on != str(chosen):
            opened.warnings.append(f"{file} was made on {opened.made_on}, this run is on {chosen}; pixels may differ")
        running_in = resolved_precision(recipe.precision, chosen)
        if opened.made_in is not None and opened.made_in != running_in:
            opened.warnings.append(
                f"{file} was made in {opened.made_in}, this run is in {running_in} (precision: "
                f"{recipe.precision.value} on this machine); pixels may differ"
            )
        for warning in opened.warnings:
            warn(warning)
        if dry_run:
            typer.echo(f"# device: {chosen}")
            typer.echo(recipe.to_yaml(), nl=False)
            return
        output = check_output(recipe, opened.source, opened.origin)
        if preview is not None:
            not_an_input("--preview", preview, input_fields(recipe))
            watching = Preview(preview)
        elif not (no_preview or quiet) and in_terminal():
            watching = _default_preview(output, stack)
        watchers = [
            stack.enter_context(LossTrace(trace_path(output))) if trace else None,
            Frames(frames or frames_folder(output), save_every) if save_every is not None else None,
            watching,
        ]
        on_step = chain(stack.enter_context(step_bar(quiet, recipe.steps)), *watchers)
        rendered = render(recipe, device=chosen, on_step=on_step, source=opened.source, origin=opened.origin)
    synthesis = rendered.synthesis
    losses = ", ".join(f"{name} {value:.4g}" for name, value in synthesis.losses.items())
    if synthesis.interrupted:
        stderr_console().print(
            f"interrupted after {synthesis.steps} steps: saved the best image so far to {rendered.path}"
        )
        raise typer.Exit(interrupted_exit_code())
    if not quiet:
        stderr_console().print(
            f"wrote {rendered.path} ({synthesis.image.shape[-1]}x{synthesis.image.shape[-2]}, "
            f"{synthesis.steps} steps on {synthesis.device} in {synthesis.seconds:.1f}s; {losses})"
        )
