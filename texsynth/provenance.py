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
import yaml

from ._version import __version__
from .bundle import Origin, bundle_origin, open_bundle
from .errors import TexsynthError, said
from .files import resolved, sha256
from .io import read_metadata
from .recipe import Recipe, parse_recipe

#: What outputs of the feed-forward path record as ``made_by``: they come from a model, not a recipe.
FEED_FORWARD_COMMANDS = ("sample", "apply")


def output_metadata(
    recipe: Recipe,
    *,
    device: str,
    precision: str,
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
        "precision": precision,
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


#: Bytes of input files one look at an output hashes in all: the output names the files, and
#: a hostile one can name huge ones (or the same one a thousand times).
MAX_HASHED_BYTES = 1 << 30


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
    return Provenance(Path(path), metadata, _states(inputs))


def _recorded_inputs(metadata: Mapping[str, Any]) -> dict[str, Any]:
    inputs = metadata.get("inputs")
    return inputs if isinstance(inputs, dict) else {}


def _states(inputs: Mapping[str, Any]) -> dict[str, str]:
    """Each recorded input's state, hashing at most MAX_HASHED_BYTES in all: the file names the paths."""
    states, budget = {}, MAX_HASHED_BYTES
    for name, digest in inputs.items():
        states[name], budget = _state(Path(name), digest, budget)
    return states


def _state(path: Path, digest: Any, budget: int) -> tuple[str, int]:
    """The input's state and the hashing budget left after checking it."""
    try:
        if not path.is_file():
            return "missing", budget
        size = path.stat().st_size
        if size > budget:
            return f"not checked: texsynth hashes at most {MAX_HASHED_BYTES >> 20} MiB of inputs", budget
        return ("unchanged" if sha256(path) == digest else "changed"), budget - size
    except (OSError, ValueError):  # unreadable, or a name no file can have (a NUL in it)
        return "unreadable", budget


def runnable_yaml(provenance: Provenance) -> str:
    """What ``texsynth show`` prints: the facts as YAML comments above the embedded recipe, so that
    ``texsynth show OUT.png > again.yaml`` is a recipe that means only what the embedded one says.

    Every value the file holds goes into a comment through :func:`~texsynth.errors.said`:
    cut short, with line breaks (YAML's own too: NEL, U+2028, U+2029) and terminal
    control characters escaped, so none can end its comment line. The recipe is
    written by ``yaml.safe_dump``, which quotes and escapes what needs it (ASCII only),
    and without an ``output`` field: texsynth never embeds one, so a file that has
    one had it added to choose where the re-run writes.
    """
    meta = provenance.metadata
    recipe = {key: value for key, value in meta["recipe"].items() if key != "output"}
    done = f"{said(meta.get('steps_done'))} of {said(recipe.get('steps'))} steps"
    if meta.get("interrupted") is True:
        done += ", interrupted"
    lines = [
        f"# {said(str(provenance.path), 500)}",
        f"# made by texsynth {said(meta.get('texsynth'))}, torch {said(meta.get('torch'))}, "
        f"on {said(meta.get('device'))}" + (f" in {said(meta['precision'])}" if "precision" in meta else ""),
        f"# seed {said(meta.get('seed'))} ({done}); final losses: {_losses_text(meta.get('losses'))}",
    ]
    bundle = meta.get("bundle")
    if isinstance(bundle, dict):
        lines.append(
            f"# from bundle {said(bundle.get('path'), 500)} (sha256 {said(bundle.get('sha256'))}); "
            "paths are inside it"
        )
    lines.append("# inputs:")
    for name, digest in _recorded_inputs(meta).items():
        lines.append(f"#   {said(name, 500)}  sha256 {said(digest)}  ({provenance.inputs.get(name, 'unknown')})")
    return "\n".join(lines) + "\n" + yaml.safe_dump(recipe, sort_keys=False)


def _losses_text(losses: Any) -> str:
    if not isinstance(losses, dict):
        return said(losses)
    return ", ".join(f"{said(name)} {_number_text(value)}" for name, value in losses.items())


def _number_text(value: Any) -> str:
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return f"{value:.4g}" if is_number else said(value)


@dataclass(frozen=True)
class Rerun:
    recipe: Recipe
    warnings: list[str]
    origin: Origin | None
    #: The device the output was made on: the same one is needed for the same pixels.
    device: str | None
    #: What its convolutions ran in ("fp32", "bf16"; None where older outputs do not say): the same is needed too.
    precision: str | None


@contextlib.contextmanager
def rerun_recipe(path: Path, *, out_dir: Path, overrides: Mapping[str, Any] | None = None) -> Iterator[Rerun]:
    """The recipe embedded in the output ``path``, ready to run again (written under ``out_dir``)."""
    path = Path(path)
    metadata = read_provenance(path)
    source = f"{path} (embedded recipe)"
    # The output goes where the user says, never where the file says: any output field it holds is replaced.
    overrides = dict(overrides or {})
    replacing = {}
    if overrides.get("output") is None:
        replacing["output"] = str(resolved(out_dir, "out_dir") / f"{path.stem}.rerun{path.suffix.lower()}")
    warnings = _version_warnings(path, metadata)
    device = metadata.get("device") if isinstance(metadata.get("device"), str) else None
    precision = metadata.get("precision") if isinstance(metadata.get("precision"), str) else None
    if "bundle" in metadata:
        bundle_path = _bundle_path(path, metadata["bundle"])
        with open_bundle(bundle_path) as bundle:
            if bundle.sha256 != metadata["bundle"].get("sha256"):
                warnings.append(f"{bundle_path} has changed since {path} was made; the result may differ")
            recipe = parse_recipe(
                metadata["recipe"], source=source, base_dir=bundle.root, overrides=overrides, replacing=replacing
            )
            yield Rerun(recipe, warnings, bundle_origin(bundle), device, precision)
        return
    recipe = parse_recipe(
        metadata["recipe"], source=source, base_dir=path.resolve().parent, overrides=overrides, replacing=replacing
    )
    for name, state in _states(_recorded_inputs(metadata)).items():
        if state == "changed":
            warnings.append(
                f"{said(name, 500)} has changed since {path} was made (its SHA-256 differs); the result may differ"
            )
    yield Rerun(recipe, warnings, None, device, precision)


def _bundle_path(path: Path, bundle: Any) -> Path:
    """The bundle an output says it was made from; it is opened like any bundle: as hostile."""
    recorded = bundle.get("path") if isinstance(bundle, dict) else None
    if not isinstance(recorded, str) or not recorded or "\x00" in recorded:
        raise TexsynthError(f"{path}: the embedded metadata names a bundle but not its path")
    return Path(recorded)


def _version_warnings(path: Path, metadata: Mapping[str, Any]) -> list[str]:
    warnings = []
    for name, now in (("texsynth", __version__), ("torch", torch.__version__)):
        made = metadata.get(name)
        if made != now:
            warnings.append(f"{path} was made with {name} {said(made)}, this is {now}; the result may differ")
    return warnings
