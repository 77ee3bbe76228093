"""Provenance: what every output carries about how it was made, and running it again.

Every output embeds its portable recipe (:meth:`Recipe.portable`), seed,
texsynth and torch versions, device and the SHA-256 of each input
(:func:`output_metadata`, written by ``io.save_image``). ``describe`` reads that back
and checks each input against its hash; ``rerun_recipe`` turns it into a
:class:`Recipe` again. A changed input is a warning naming the file, not an
error: re-running with edited images is a legitimate thing to want, but the
user must know the result will differ. Outputs made from a bundle name the
bundle, whose files are unpacked again. :func:`recipe_identity` names what
shapes an image, for batch folders to recognise their own tiles.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ._version import __version__
from .bundle import Origin, bundle_origin, open_bundle
from .errors import TexsynthError
from .io import read_metadata, sha256
from .recipe import Recipe, parse_recipe

#: What outputs of the feed-forward path record as ``made_by``: they come from a model, not a recipe.
FEED_FORWARD_COMMANDS = ("sample", "apply")


def output_metadata(
    recipe: Recipe,
    *,
    device: str,
    steps_done: int,
    interrupted: bool,
    losses: Mapping[str, float],
    origin: Origin | None = None,
) -> dict[str, Any]:
    """What every output carries: the portable recipe, its seed, versions, how the run went and input hashes.

    Plain values rather than the API's result record, so this module sits below the API.
    """
    inputs = {str(path): sha256(path) for _, path in recipe.input_images()}
    data = {
        "texsynth": __version__,
        "torch": torch.__version__,
        "device": device,
        "seed": recipe.seed,
        "steps_done": steps_done,
        "interrupted": interrupted,
        "losses": dict(losses),
        "recipe": recipe.portable(),
        "inputs": inputs,
    }
    if origin is not None:
        data = {**_paths_relative_to(data, origin.root), **origin.extra}
    return data


def _paths_relative_to(data: Any, root: Path) -> Any:
    """``data`` with every path string under ``root`` (values and keys) made relative to it."""
    prefix = f"{root}/"
    if isinstance(data, str):
        return data[len(prefix):] if data.startswith(prefix) else data
    if isinstance(data, dict):
        return {_paths_relative_to(key, root): _paths_relative_to(value, root) for key, value in data.items()}
    if isinstance(data, list):
        return [_paths_relative_to(item, root) for item in data]
    return data


def recipe_identity(recipe: Recipe) -> str:
    """A hash of everything that shapes an image: the portable recipe with images by content, not path.

    Image paths are replaced by their files' hashes, so moving a folder of
    recipe + images keeps what was made from it valid.
    """
    digests = {str(path): sha256(path) for _, path in recipe.input_images()}
    text = json.dumps(recipe.portable(), sort_keys=True)
    for path, digest in digests.items():
        text = text.replace(json.dumps(path), json.dumps(digest))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Provenance:
    """An output's embedded metadata, and the state of each input it names."""

    path: Path
    metadata: dict[str, Any]
    #: input as recorded -> "unchanged", "changed" or "missing" (bundle inputs: "in bundle")
    inputs: dict[str, str] = field(default_factory=dict)


def read_provenance(path: Path) -> dict[str, Any]:
    """The metadata embedded in the output image ``path``; a clean error if it has none."""
    path = Path(path)
    metadata = read_metadata(path)
    made_by = metadata.get("made_by") if metadata is not None else None
    if made_by in FEED_FORWARD_COMMANDS:
        raise TexsynthError(
            f"{path}: made by texsynth {made_by} from a trained model, not by a recipe; "
            f"make it again with texsynth {made_by} (texsynth show prints the model and settings)"
        )
    if metadata is None or not isinstance(metadata.get("recipe"), dict):
        raise TexsynthError(
            f"{path}: no texsynth recipe embedded in this image (not made by texsynth, or re-saved by another program)"
        )
    return metadata


def describe(path: Path) -> Provenance:
    """What ``path`` says about how it was made, with each recorded input checked against its hash."""
    metadata = read_provenance(path)
    inputs = _recorded_inputs(metadata)
    if "bundle" in metadata:
        return Provenance(Path(path), metadata, {name: "in bundle" for name in inputs})
    return Provenance(Path(path), metadata, {name: _state(Path(name), digest) for name, digest in inputs.items()})


def _recorded_inputs(metadata: Mapping[str, Any]) -> dict[str, Any]:
    inputs = metadata.get("inputs")
    return inputs if isinstance(inputs, dict) else {}


def _state(path: Path, digest: Any) -> str:
    if not path.is_file():
        return "missing"
    return "unchanged" if sha256(path) == digest else "changed"


@dataclass(frozen=True)
class Rerun:
    recipe: Recipe
    warnings: list[str]
    origin: Origin | None
    #: The device the output was made on: the same one is needed for the same pixels.
    device: str | None


@contextlib.contextmanager
def rerun_recipe(path: Path, *, out_dir: Path, overrides: Mapping[str, Any] | None = None) -> Iterator[Rerun]:
    """The recipe embedded in the output ``path``, ready to run again (written under ``out_dir``)."""
    path = Path(path)
    metadata = read_provenance(path)
    source = f"{path} (embedded recipe)"
    overrides = dict(overrides or {})
    if overrides.get("output") is None:
        overrides["output"] = str(Path(out_dir).expanduser().resolve() / f"{path.stem}.rerun{path.suffix.lower()}")
    warnings = _version_warnings(path, metadata)
    bundle_info = metadata.get("bundle")
    if isinstance(bundle_info, dict):
        bundle_path = Path(str(bundle_info.get("path", "")))
        with open_bundle(bundle_path) as bundle:
            if bundle.sha256 != bundle_info.get("sha256"):
                warnings.append(f"{bundle_path} has changed since {path} was made; the result may differ")
            recipe = parse_recipe(metadata["recipe"], source=source, base_dir=bundle.root, overrides=overrides)
            yield Rerun(recipe, warnings, bundle_origin(bundle), metadata.get("device"))
        return
    recipe = parse_recipe(metadata["recipe"], source=source, base_dir=path.resolve().parent, overrides=overrides)
    for name, digest in _recorded_inputs(metadata).items():
        if _state(Path(name), digest) == "changed":
            warnings.append(f"{name} has changed since {path} was made (its SHA-256 differs); the result may differ")
    yield Rerun(recipe, warnings, None, metadata.get("device"))


def _version_warnings(path: Path, metadata: Mapping[str, Any]) -> list[str]:
    warnings = []
    for name, now in (("texsynth", __version__), ("torch", torch.__version__)):
        made = metadata.get(name)
        if made != now:
            warnings.append(f"{path} was made with {name} {made}, this is {now}; the result may differ")
    return warnings
