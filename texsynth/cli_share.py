"""The sharing commands: pack and show.

Thin like the rest of the CLI: each parses its options, calls one API function
and prints the result; a :class:`TexsynthError` is one line and exit code 2
through ``fail_cleanly``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
import yaml

from .bundle import BUNDLE_SUFFIX, pack
from .cli import app, fail_cleanly
from .provenance import describe


@app.command("pack")
@fail_cleanly
def pack_command(
    file: Annotated[Path, typer.Argument(help="The recipe to pack.", show_default=False)],
    output: Annotated[
        Optional[Path], typer.Option("-o", "--output", help=f"The bundle to write. Default: NAME{BUNDLE_SUFFIX}.")
    ] = None,
) -> None:
    """Pack a recipe and every image it uses into one zip that `texsynth recipe` runs directly."""
    packed = pack(file, output or Path(f"{file.stem}{BUNDLE_SUFFIX}"))
    typer.echo(f"wrote {packed.path} ({len(packed.files)} files: {', '.join(packed.files)})", err=True)


@app.command("show")
@fail_cleanly
def show_command(
    image: Annotated[Path, typer.Argument(help="An image written by texsynth.", show_default=False)],
    as_json: Annotated[bool, typer.Option("--json", help="Print the embedded metadata as JSON.")] = False,
) -> None:
    """Print the recipe, seed, versions and input hashes embedded in an output image."""
    provenance = describe(image)
    meta = provenance.metadata
    if as_json:
        typer.echo(json.dumps(meta, indent=2))
        return
    # The facts as YAML comments above the recipe, so `texsynth show OUT.png > again.yaml` is a runnable recipe.
    steps = meta["recipe"].get("steps")
    done = f"{meta.get('steps_done')} of {steps} steps" + (", interrupted" if meta.get("interrupted") else "")
    losses = ", ".join(f"{name} {value:.4g}" for name, value in (meta.get("losses") or {}).items())
    lines = [
        f"# {image}",
        f"# made by texsynth {meta.get('texsynth')}, torch {meta.get('torch')}, on {meta.get('device')}",
        f"# seed {meta.get('seed')} ({done}); final losses: {losses}",
    ]
    bundle = meta.get("bundle")
    if isinstance(bundle, dict):
        lines.append(f"# from bundle {bundle.get('path')} (sha256 {bundle.get('sha256')}); paths are inside it")
    lines.append("# inputs:")
    for name, digest in (meta.get("inputs") or {}).items():
        lines.append(f"#   {name}  sha256 {digest}  ({provenance.inputs.get(name, 'unknown')})")
    typer.echo("\n".join(lines))
    typer.echo(yaml.safe_dump(meta["recipe"], sort_keys=False), nl=False)
