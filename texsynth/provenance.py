"""Provenance: what an output says about how it was made, and running it again.

Every output embeds its effective recipe, seed, texsynth and torch versions,
device and the SHA-256 of each input (``api.metadata``, ``io.read_metadata``).
``describe`` reads that back and checks each input against its hash;
``rerun_recipe`` turns it into a :class:`Recipe` again. A changed input is a
warning naming the file, not an error: re-running with edited images is a
legitimate thing to want, but the user must know the result will differ.
Outputs made from a bundle name the bundle, whose files are unpacked again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .api import Origin, sha256
from .errors import TexsynthError
from .io import read_metadata
from .recipe import Recipe, parse_recipe


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
    if metadata is None or not isinstance(metadata.get("recipe"), dict):
        raise TexsynthError(
            f"{path}: no texsynth recipe embedded in this image (not made by texsynth, or re-saved by another program)"
        )
    return metadata


def describe(path: Path) -> Provenance:
    """What ``path`` says about how it was made, with each recorded input checked against its hash."""
    metadata = read_provenance(path)
    inputs = metadata.get("inputs") if isinstance(metadata.get("inputs"), dict) else {}
    if "bundle" in metadata:
        return Provenance(Path(path), metadata, {name: "in bundle" for name in inputs})
    return Provenance(Path(path), metadata, {name: _state(Path(name), digest) for name, digest in inputs.items()})


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
    from .bundle import bundle_origin, open_bundle

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
    recorded = metadata.get("inputs") if isinstance(metadata.get("inputs"), dict) else {}
    for name, digest in recorded.items():
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
