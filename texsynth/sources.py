"""Where a recipe comes from: a YAML file, a bundle, or an output image's embedded recipe.

``texsynth recipe`` and ``texsynth validate`` accept all three; this module
tells them apart (by content for zips, by suffix for images) and hands back a
:class:`Recipe` plus what the run should know: warnings to show, where the
inputs came from, and the device an output was made on.
"""

from __future__ import annotations

import contextlib
import zipfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .api import check_output
from .bundle import Origin, load_bundled_recipe, open_bundle
from .errors import TexsynthError, located
from .features import weights_problem
from .provenance import rerun_recipe
from .recipe import OUTPUT_SUFFIXES, Recipe, load_recipe

#: Where bundles and re-runs write when the user names no output folder.
DEFAULT_OUT_DIR = Path("out")


@dataclass(frozen=True)
class Opened:
    recipe: Recipe
    source: str
    warnings: list[str] = field(default_factory=list)
    origin: Origin | None = None
    made_on: str | None = None  # device of the output a re-run comes from
    made_in: str | None = None  # and the precision its convolutions ran in


def kind_of(path: Path) -> str:
    """``"bundle"``, ``"image"`` or ``"yaml"``."""
    path = Path(path)
    if path.suffix.lower() == ".zip" or (path.is_file() and zipfile.is_zipfile(path)):
        return "bundle"
    if path.suffix.lower() in OUTPUT_SUFFIXES:
        return "image"
    return "yaml"


@contextlib.contextmanager
def open_recipe(
    path: Path, *, overrides: Mapping[str, Any] | None = None, out_dir: Path = DEFAULT_OUT_DIR
) -> Iterator[Opened]:
    """The recipe in ``path``; bundle files stay unpacked until the context ends."""
    path = Path(path)
    kind = kind_of(path)
    if kind == "bundle":
        with open_bundle(path) as bundle:
            recipe, origin = load_bundled_recipe(bundle, out_dir=out_dir, overrides=overrides)
            yield Opened(recipe, bundle.source, origin=origin)
    elif kind == "image":
        with rerun_recipe(path, out_dir=out_dir, overrides=overrides) as rerun:
            yield Opened(rerun.recipe, str(path), rerun.warnings, rerun.origin, rerun.device, rerun.precision)
    else:
        yield Opened(load_recipe(path, overrides=overrides), str(path))


def validate(paths: Sequence[Path], *, out_dir: Path = DEFAULT_OUT_DIR) -> dict[Path, list[str]]:
    """Every problem in each file (an empty list when it is fine), without running anything.

    Beyond what loading checks, what a run checks before it starts: the output
    (see :func:`texsynth.api.check_output`) and the weights file, read as a run would.
    """
    found: dict[Path, list[str]] = {}
    for path in paths:
        try:
            with open_recipe(Path(path), out_dir=out_dir) as opened:
                found[Path(path)] = _before_a_run(opened)
        except TexsynthError as error:
            found[Path(path)] = list(error.problems)
    return found


def _before_a_run(opened: Opened) -> list[str]:
    problems = []
    try:
        check_output(opened.recipe, opened.source, opened.origin)
    except TexsynthError as error:
        problems.append(str(error))
    weights = opened.recipe.weights
    problem = weights_problem(weights) if weights is not None else None
    if problem:
        problems.append(located(opened.source, "weights", f"{weights}: {problem}"))
    return problems
