"""Sampling a trained texture generator: tiles in one forward pass, blends by weight, folders like ``texsynth batch``.

Sample ``i``'s seed derives from (seed, i) exactly as a batch tile's does
(:func:`texsynth.tiles.tile_seed`), and its noise from that seed alone, so
sample 17 is the same image in a batch of 1 or 64. On the CPU each sample is
run through the network alone: batched convolutions split their work by batch
size and round differently, and two cores have no idle width for a batch to
fill anyway. A folder of samples follows the batch conventions
(:mod:`texsynth.tile_folder`): one PNG per sample with its provenance (model
hash, recipe, seed, blend), ``manifest.json``, a contact sheet, and a re-run
skips the samples already there.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._version import __version__
from ..errors import TexsynthError
from ..io import save_image
from ..tile_folder import (
    Tile,
    check_folder,
    completed,
    read_manifest,
    remove_leftovers,
    tile_name,
    update_manifest,
    write_contact_sheet,
)
from ..tiles import tile_seed
from .data import sample_noise
from .model_file import FastModel, load_model

#: Samples run through the network together on a GPU (the CPU runs them one by one, see the module docstring).
GPU_BATCH = 64
#: Most samples one folder may ask for: each is a file, and the manifest lists them all.
MAX_COUNT = 1_000_000


def blend_weights(model: FastModel, blend: Mapping[str, float] | None) -> list[float]:
    """The network's style weights (normalized) for ``blend`` (style name -> weight > 0; others get 0).

    None is the model's default: the recipe's own weights.
    """
    if blend is None:
        return list(model.blend)
    unknown = [name for name in blend if name not in model.styles]
    if unknown:
        raise TexsynthError(f"blend: the model has no style {unknown[0]!r}; its styles are {', '.join(model.styles)}")
    for name, weight in blend.items():
        if not (isinstance(weight, (int, float)) and math.isfinite(weight) and weight > 0):
            raise TexsynthError(f"blend: {name}: weight must be a number > 0, got {weight!r}")
    total = float(sum(blend.values()))
    return [float(blend.get(name, 0.0)) / total for name in model.styles]


def check_sample_size(model: FastModel, width: int, height: int) -> None:
    network = model.generator()
    for side in (width, height):
        if side < network.stride or side % network.stride:
            raise TexsynthError(
                f"size: {width}x{height} px: each side must be a multiple of {network.stride}, the generator's stride"
            )


@torch.no_grad()
def sample_images(
    model: FastModel,
    seeds: Sequence[int],
    *,
    width: int,
    height: int,
    blend: Mapping[str, float] | None = None,
    device: str | torch.device = "cpu",
    batch_size: int | None = None,
) -> Tensor:
    """One texture per seed, (N, 3, height, width) in [0, 1] on the CPU, in one forward pass each.

    ``batch_size`` samples go through the network together on a GPU (default
    64); the CPU takes them one at a time, so a sample is the same in any batch.
    """
    network = model.generator()
    check_sample_size(model, width, height)
    device = torch.device(device)
    weights = torch.tensor([blend_weights(model, blend)], dtype=torch.float32, device=device)
    network.to(device).eval()
    # On the CPU a batched convolution rounds differently from a single one: one at a time there.
    batch = 1 if device.type == "cpu" else batch_size or GPU_BATCH
    shapes = network.noise_shapes(width, height)
    images = []
    for start in range(0, len(seeds), batch):
        chunk = seeds[start : start + batch]
        noise = [z.to(device) for z in sample_noise(shapes, chunk)]
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            images.append(network(noise, weights.expand(len(chunk), -1)).float().cpu())
    return torch.cat(images)


def sample(
    model: FastModel | Path,
    *,
    count: int,
    width: int = 256,
    height: int = 256,
    seed: int = 0,
    blend: Mapping[str, float] | None = None,
    device: str | torch.device = "cpu",
) -> Tensor:
    """``count`` textures (count, 3, H, W): sample ``i`` from seed ``tile_seed(seed, i)``."""
    model = load_model(Path(model)) if not isinstance(model, FastModel) else model
    seeds = [tile_seed(seed, index) for index in range(count)]
    return sample_images(model, seeds, width=width, height=height, blend=blend, device=device)


def recipe_size(model: FastModel) -> tuple[int, int]:
    """(width, height) of the recipe the model was trained from (256 × 256 where it names none)."""
    size = model.recipe.get("size", 256)
    if isinstance(size, list) and len(size) == 2 and all(type(side) is int for side in size):
        return size[0], size[1]
    return (size, size) if type(size) is int else (256, 256)


@dataclass
class SampleReport:
    folder: Path
    wanted: int
    width: int = 0
    height: int = 0
    skipped: list[int] = field(default_factory=list)
    made: list[Tile] = field(default_factory=list)
    seconds: float = 0.0


def sample_folder(
    model_path: Path,
    *,
    out: Path,
    count: int,
    width: int | None = 256,
    height: int | None = 256,
    seed: int = 0,
    blend: Mapping[str, float] | None = None,
    device: str | torch.device = "cpu",
    batch_size: int | None = None,
    force: bool = False,
    on_sample: Callable[[Tile], None] | None = None,
) -> SampleReport:
    """Write samples 0..count-1 of the model into ``out`` as tiles, skipping those already there.

    ``width`` and ``height`` None: the size of the recipe the model was trained from.
    """
    if not 1 <= count <= MAX_COUNT:
        raise TexsynthError(f"count: must be from 1 to {MAX_COUNT}, got {count}")
    if batch_size is not None and batch_size < 1:
        raise TexsynthError(f"batch_size: must be at least 1, got {batch_size}")
    model = load_model(model_path)
    weights = blend_weights(model, blend)
    if width is None or height is None:
        width, height = recipe_size(model)
    check_sample_size(model, width, height)
    identity = sample_identity(model, width, height, weights)
    source = str(model_path)
    check_folder(out, identity, force=force, source=source)
    out.mkdir(parents=True, exist_ok=True)
    remove_leftovers(out)
    done = {} if force else completed(out, identity)
    replacing = force and (read_manifest(out) or {}).get("identity") not in (None, identity)
    report = SampleReport(folder=out, wanted=count, width=width, height=height, skipped=sorted(done))
    provenance = _provenance(model, weights, width, height)
    made_by = {"model": _without(provenance["model"], "recipe"), "blend": provenance["blend"], "size": [width, height]}
    update_manifest(out, model.recipe, identity, [done[i] for i in report.skipped], replace=replacing, extra=made_by)
    todo = [index for index in range(count) if index not in done]
    chunk_size = batch_size or (GPU_BATCH if torch.device(device).type != "cpu" else 8)
    began = time.perf_counter()
    for start in range(0, len(todo), chunk_size):
        chunk = todo[start : start + chunk_size]
        seeds = [tile_seed(seed, index) for index in chunk]
        started = time.perf_counter()
        images = sample_images(
            model, seeds, width=width, height=height, blend=blend, device=device, batch_size=batch_size
        )
        seconds = (time.perf_counter() - started) / len(chunk)
        tiles = []
        for item, (index, sample_seed) in enumerate(zip(chunk, seeds)):
            data = {**provenance, "seed": sample_seed, "device": str(device)}
            # No timings in the file: the same model and seed give the same bytes (the manifest has them).
            data["tile"] = {"index": index, "batch_seed": seed, "identity": identity}
            save_image(images[item], out / tile_name(index), data)
            tiles.append(Tile(index=index, seed=sample_seed, file=tile_name(index), seconds=seconds))
        update_manifest(out, model.recipe, identity, tiles, extra=made_by)
        report.made.extend(tiles)
        for tile in tiles:
            if on_sample is not None:
                on_sample(tile)
    report.seconds = time.perf_counter() - began
    write_contact_sheet(out)
    return report


def sample_identity(model: FastModel, width: int, height: int, weights: Sequence[float]) -> str:
    """What makes a folder's samples the same: the model's bytes, the size and the blend."""
    import hashlib
    import json

    text = json.dumps({"model": model.sha256, "size": [width, height], "blend": [round(w, 12) for w in weights]})
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _provenance(model: FastModel, weights: Sequence[float], width: int, height: int) -> dict[str, Any]:
    """What a sample carries: the model (path, hash, the recipe it was trained from), blend and size."""
    return {
        "texsynth": __version__,
        "torch": torch.__version__,
        "made_by": "sample",
        "model": {"path": str(model.path), "sha256": model.sha256, "kind": model.kind, "recipe": model.recipe},
        "blend": dict(zip(model.styles, weights)),
        "size": [width, height],
        "losses": {},
    }


def _without(data: Mapping[str, Any], key: str) -> dict[str, Any]:
    return {name: value for name, value in data.items() if name != key}
