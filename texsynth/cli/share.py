"""The sharing commands: validate, schema, new, pack and show.

Thin like the rest of the CLI: each parses its options, calls one API function
and prints the result; ``cli/__init__.py`` registers them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from ..bundle import BUNDLE_SUFFIX
from ..errors import TexsynthError
from ..files import resolved
from ..io import atomic_write, probe_image
from ..packing import pack
from ..provenance import describe, runnable_yaml
from ..schema import recipe_schema
from ..sources import DEFAULT_OUT_DIR, validate
from ..starter import parse_style, write_starter
from .common import EXIT_BAD_INPUT, FLAG, not_an_input, output_file
from .fast import is_model_file, show_feed_forward_output, show_model


def validate_command(
    files: Annotated[
        list[Path], typer.Argument(help="Recipes, bundles or output images to check.", show_default=False)
    ],
    out_dir: Annotated[
        Path, typer.Option(help="Output folder a bundle's output is checked against.")
    ] = DEFAULT_OUT_DIR,
) -> None:
    """Check recipes without running them and list every problem (exit 2 if there are any)."""
    found = validate(files, out_dir=resolved(out_dir, "--out-dir"))
    for path, problems in found.items():
        if problems:
            for problem in problems:
                typer.echo(f"error: {problem}", err=True)
        else:
            typer.echo(f"ok: {path}")
    if any(found.values()):
        raise typer.Exit(EXIT_BAD_INPUT)


def schema_command(
    output: Annotated[
        Optional[Path], typer.Option("-o", "--output", help="Write the schema to this file instead of printing it.")
    ] = None,
) -> None:
    """Print the recipe's JSON Schema, for editors that complete and check YAML (see the README)."""
    text = json.dumps(recipe_schema(), indent=2) + "\n"
    if output is None:
        typer.echo(text, nl=False)
        return
    output = output_file("-o", output)
    with atomic_write(output, "w") as handle:
        handle.write(text)
    typer.echo(f"wrote {output}", err=True)


def new_command(
    style: Annotated[
        list[str],
        typer.Option(
            "--style", help="A style image, optionally with its weight: painting.jpg:0.7. Repeat for a blend."
        ),
    ],
    content: Annotated[Optional[Path], typer.Option(help="A content image: makes it a style transfer.")] = None,
    output: Annotated[Path, typer.Option("-o", "--output", help="The recipe file to write.")] = Path("recipe.yaml"),
    force: Annotated[bool, typer.Option("--force", help="Replace the file if it exists.", metavar=FLAG)] = False,
) -> None:
    """Write a commented starter recipe for the given images."""
    output = output_file("-o", output)
    styles = []
    for text in style:
        try:
            image, weight = parse_style(text)
        except ValueError as error:
            raise TexsynthError(f"--style: {error}") from None
        styles.append((image, weight))
    images = [*(("--style", image) for image, _ in styles), *([("--content", content)] if content else [])]
    for option, image in images:
        problem = probe_image(image)
        if problem:
            raise TexsynthError(f"{option}: {problem}")
    not_an_input("-o", output, list(images))
    path = write_starter(output=output, styles=styles, content=content, force=force)
    typer.echo(f"wrote {path}; run it with: texsynth recipe {path}", err=True)


def pack_command(
    file: Annotated[Path, typer.Argument(help="The recipe to pack.", show_default=False)],
    output: Annotated[
        Optional[Path], typer.Option("-o", "--output", help=f"The bundle to write. Default: NAME{BUNDLE_SUFFIX}.")
    ] = None,
) -> None:
    """Pack a recipe and every image it uses into one zip that `texsynth recipe` runs directly."""
    packed = pack(file, output_file("-o", output or Path(f"{file.stem}{BUNDLE_SUFFIX}")))
    typer.echo(f"wrote {packed.path} ({len(packed.files)} files: {', '.join(packed.files)})", err=True)


def show_command(
    image: Annotated[
        Path, typer.Argument(help="An image written by texsynth, or a model file (.safetensors).", show_default=False)
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print the embedded metadata as JSON.", metavar=FLAG)] = False,
) -> None:
    """Print the recipe, seed, versions and input hashes embedded in an output image or a model."""
    if is_model_file(image):
        show_model(image, as_json=as_json)
        return
    if show_feed_forward_output(image, as_json=as_json):
        return
    provenance = describe(image)
    if as_json:
        typer.echo(json.dumps(provenance.metadata, indent=2))
        return
    typer.echo(runnable_yaml(provenance), nl=False)
