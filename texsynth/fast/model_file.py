"""Model files: weights in safetensors, everything else as JSON in its header. Loading never runs code.

A model file holds the network's tensors and one metadata entry,
``texsynth.model``: JSON with the format and its version, the texsynth and
torch versions, what kind of network it is and its architecture (plain
values, checked before anything is built), the style names and default blend,
the portable recipe it was trained from with its inputs' hashes, and the
training record. safetensors is a header of JSON and raw little-endian
tensors, so reading one unpickles nothing: a pickle, a torch ``.pt`` file or
random bytes is refused as not a model, and a file whose tensors do not fit
its stated architecture is refused before any weight is loaded.

Training checkpoints (``MODEL.checkpoint.safetensors``) are the same format
with the optimizer's state beside the weights.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors
from torch import Tensor, nn

from .._version import __version__
from ..errors import TexsynthError
from ..io import atomic_write, sha256
from ..recipe import Recipe, parse_recipe
from .networks import TextureGenerator, TransferNetwork, texture_generator_from, transfer_network_from

MODEL_FORMAT = "texsynth-model"
#: The model format this texsynth writes (and every one before it, which it reads); a newer one is refused
#: by name. 2: a transfer network's architecture names its skip (format 1's add their change to the photo).
MODEL_FORMAT_VERSION = 2
MODEL_SUFFIX = ".safetensors"
METADATA_KEY = "texsynth.model"
CHECKPOINT_KEY = "texsynth.checkpoint"
#: Model files are a few MB; anything far larger is a mistake or an attack.
MAX_MODEL_BYTES = 2**30
#: What each kind of model is for: the command that uses it.
KINDS = {"texture": "texsynth sample", "transfer": "texsynth apply"}
#: The network each kind of model holds.
NETWORK_OF = {"texture": TextureGenerator.kind, "transfer": TransferNetwork.kind}
#: What a model of another kind cannot do, by the kind that was wanted.
CANNOT = {"texture": "makes no textures", "transfer": "stylizes no photos"}

Network = nn.Module
AnyNetwork = TypeVar("AnyNetwork", TextureGenerator, TransferNetwork)


@dataclass(frozen=True)
class FastModel:
    """A trained network and what it knows about itself.

    ``styles`` are the style names (the style images' stems) in the network's
    order; ``blend`` their default weights (the recipe's own, normalized).
    ``recipe`` is the portable recipe it was trained from, its image paths
    relative to the model file's folder, and ``inputs`` those images' hashes;
    :meth:`trained_recipe` reads it back as a Recipe, where the images are.
    """

    network: Network
    kind: str
    styles: tuple[str, ...]
    blend: tuple[float, ...]
    recipe: dict[str, Any]
    inputs: dict[str, str] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    path: Path | None = None
    sha256: str | None = None
    #: The format the file was read from; what is written is always :data:`MODEL_FORMAT_VERSION`.
    format_version: int = MODEL_FORMAT_VERSION

    def generator(self) -> TextureGenerator:
        """The texture generator, when this is a texture model; else one line saying which command it is for."""
        return self._network_of("texture", TextureGenerator)

    def transformer(self) -> TransferNetwork:
        """The transfer network, when this is a transfer model; else one line saying which command it is for."""
        return self._network_of("transfer", TransferNetwork)

    def _network_of(self, kind: str, network_class: type[AnyNetwork]) -> AnyNetwork:
        if self.kind != kind:
            where = f"{self.path}: " if self.path else ""
            raise TexsynthError(f"{where}a {self.kind} model {CANNOT[kind]}; use it with {KINDS[self.kind]}")
        assert isinstance(self.network, network_class)  # loading checked that the kind and the network agree
        return self.network

    def trained_recipe(self, **overrides: Any) -> Recipe:
        """The recipe the model was trained from, as a Recipe (its images must be where they were)."""
        base = self.path.parent if self.path is not None else Path.cwd()
        return parse_recipe(self.recipe, source=f"{self.path} (its recipe)", base_dir=base, overrides=overrides)

    def architecture(self) -> dict[str, Any]:
        return self.network.architecture()  # type: ignore[operator]

    def describe(self) -> dict[str, Any]:
        """Everything the file says about itself, as plain data (``texsynth show``).

        A file of an older format reads as the network it was (the architecture filled in as that
        format meant it) but keeps its own ``format_version`` here; saving it writes the current one.
        """
        return {
            "format": MODEL_FORMAT,
            "format_version": self.format_version,
            "texsynth": self.versions.get("texsynth", __version__),
            "torch": self.versions.get("torch", torch.__version__),
            "kind": self.kind,
            "architecture": self.architecture(),
            "styles": list(self.styles),
            "blend": list(self.blend),
            "recipe": self.recipe,
            "inputs": self.inputs,
            "training": self.training,
        }


def style_names(images: Sequence[Path]) -> tuple[str, ...]:
    """Names for styles by their images' stems; a repeated stem gets ``-2``, ``-3``, ..."""
    names: list[str] = []
    for image in images:
        name, count = Path(image).stem, 1
        while name in names:
            count += 1
            name = f"{Path(image).stem}-{count}"
        names.append(name)
    return tuple(names)


def checkpoint_path(model: Path) -> Path:
    """``models/brick.safetensors`` -> ``models/brick.checkpoint.safetensors``."""
    model = Path(model)
    stem = model.name[: -len(MODEL_SUFFIX)] if model.name.endswith(MODEL_SUFFIX) else model.name
    return model.with_name(f"{stem}.checkpoint{MODEL_SUFFIX}")


# ---------------------------------------------------------------- writing


def _weights(network: Network, prefix: str = "") -> dict[str, Tensor]:
    state = network.state_dict()
    return {f"{prefix}{name}": value.detach().float().cpu().contiguous() for name, value in state.items()}


def _header(model: FastModel) -> str:
    return json.dumps({**model.describe(), "format_version": MODEL_FORMAT_VERSION})


def save_model(path: Path, model: FastModel) -> Path:
    """Write ``model`` to ``path`` atomically (a crash never leaves half a file or clobbers the old one)."""
    header = {METADATA_KEY: _header(model)}
    return _write(path, save_tensors(_weights(model.network), metadata=header))


def save_checkpoint(path: Path, model: FastModel, optimizer: torch.optim.Optimizer, state: Mapping[str, Any]) -> Path:
    """Weights, the optimizer's tensors and ``state`` (iteration, options, record) in one atomic file."""
    tensors = _weights(model.network, "model.")
    optimizer_state = optimizer.state_dict()
    for index, slots in optimizer_state["state"].items():
        for name, value in slots.items():
            tensors[f"optimizer.{index}.{name}"] = torch.as_tensor(value).detach().cpu().contiguous()
    header = {
        METADATA_KEY: _header(model),
        CHECKPOINT_KEY: json.dumps({**state, "param_groups": optimizer_state["param_groups"]}, sort_keys=True),
    }
    return _write(path, save_tensors(tensors, metadata=header))


def _write(path: Path, data: bytes) -> Path:
    with atomic_write(path) as handle:
        handle.write(data)
    return Path(path)


# ---------------------------------------------------------------- reading


def load_model(path: Path, *, device: str | torch.device = "cpu") -> FastModel:
    """Read a model file, checking every field and tensor; one :class:`TexsynthError` line for any problem."""
    path = Path(path)
    tensors, header = _read(path)
    model = _model_from(path, header, tensors, prefix="")
    model.network.to(device)
    return model


@dataclass(frozen=True)
class Checkpoint:
    model: FastModel
    optimizer_state: dict[str, Any]
    state: dict[str, Any]


def load_checkpoint(path: Path) -> Checkpoint:
    """A training checkpoint: the model, the optimizer's state dict and the loop's state."""
    path = Path(path)
    tensors, header = _read(path)
    model = _model_from(path, header, tensors, prefix="model.")
    state = _json(path, header, CHECKPOINT_KEY)
    groups = state.pop("param_groups", None)
    if not isinstance(groups, list):
        raise TexsynthError(f"{path}: not a texsynth checkpoint (no optimizer settings)")
    slots: dict[int, dict[str, Tensor]] = {}
    for name, value in tensors.items():
        if name.startswith("optimizer."):
            _, index, slot = name.split(".", 2)
            if not index.isdigit():
                raise TexsynthError(f"{path}: unexpected tensor {name!r}")
            slots.setdefault(int(index), {})[slot] = value
    return Checkpoint(model, {"state": slots, "param_groups": groups}, state)


def _read(path: Path) -> tuple[dict[str, Tensor], dict[str, str]]:
    if not path.exists():
        raise TexsynthError(f"{path}: no such model file")
    if not path.is_file():
        raise TexsynthError(f"{path}: not a file")
    size = path.stat().st_size
    if size > MAX_MODEL_BYTES:
        raise TexsynthError(f"{path}: {size} bytes is larger than any texsynth model ({MAX_MODEL_BYTES} at most)")
    data = path.read_bytes()
    try:
        tensors = load_tensors(data)
        header = _metadata_of(data)
    except (SafetensorError, ValueError, OSError, RuntimeError, json.JSONDecodeError, RecursionError, KeyError):
        raise TexsynthError(
            f"{path}: not a texsynth model file (safetensors); a pickle or torch .pt file is never loaded"
        ) from None
    return tensors, header


def _metadata_of(data: bytes) -> dict[str, str]:
    """The string metadata of a safetensors file (its header's ``__metadata__``)."""
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + length])
    metadata = header.get("__metadata__") or {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise ValueError("metadata must map names to strings")
    return metadata


def _json(path: Path, header: Mapping[str, str], key: str) -> dict[str, Any]:
    if key not in header:
        what = "model" if key == METADATA_KEY else "checkpoint"
        raise TexsynthError(f"{path}: a safetensors file, but not a texsynth {what} (no {key} metadata)")
    try:
        value = json.loads(header[key])
    except (json.JSONDecodeError, RecursionError):
        raise TexsynthError(f"{path}: {key}: unreadable JSON") from None
    if not isinstance(value, dict):
        raise TexsynthError(f"{path}: {key}: must be a JSON object")
    return value


def _model_from(path: Path, header: Mapping[str, str], tensors: Mapping[str, Tensor], *, prefix: str) -> FastModel:
    meta = _json(path, header, METADATA_KEY)
    if meta.get("format") != MODEL_FORMAT:
        raise TexsynthError(f"{path}: not a texsynth model (format {meta.get('format')!r})")
    version = meta.get("format_version")
    if type(version) is not int or version < 1:
        raise TexsynthError(f"{path}: format_version must be a whole number, got {version!r}")
    if version > MODEL_FORMAT_VERSION:
        raise TexsynthError(
            f"{path}: model format version {version} is newer than texsynth {__version__} reads "
            f"(version {MODEL_FORMAT_VERSION}); upgrade texsynth to use it"
        )
    kind = meta.get("kind")
    if kind not in KINDS:
        raise TexsynthError(f"{path}: kind must be one of {sorted(KINDS)}, got {kind!r}")
    architecture = meta.get("architecture")
    if not isinstance(architecture, dict):
        raise TexsynthError(f"{path}: architecture: must be a JSON object")
    try:
        network = _network_from(architecture)
    except TexsynthError as error:
        raise TexsynthError(f"{path}: {error}") from None
    if network.kind != NETWORK_OF[kind]:
        raise TexsynthError(f"{path}: a {kind} model must hold a {NETWORK_OF[kind]}, not a {network.kind}")
    styles, blend = _styles(path, meta, network)
    _load_weights(path, network, tensors, prefix)
    network.eval()
    return FastModel(
        network=network,
        kind=kind,
        styles=styles,
        blend=blend,
        recipe=_mapping(path, meta, "recipe"),
        inputs={str(k): str(v) for k, v in _mapping(path, meta, "inputs").items()},
        training=_mapping(path, meta, "training"),
        versions={name: str(meta.get(name)) for name in ("texsynth", "torch")},
        path=path,
        sha256=sha256(path),
        format_version=version,
    )


def _network_from(architecture: Mapping[str, Any]) -> Network:
    builders = {TextureGenerator.kind: texture_generator_from, TransferNetwork.kind: transfer_network_from}
    kind = architecture.get("kind")
    if kind not in builders:
        raise TexsynthError(f"architecture: unknown network {kind!r}")
    return builders[kind](architecture)


def _styles(path: Path, meta: Mapping[str, Any], network: Network) -> tuple[tuple[str, ...], tuple[float, ...]]:
    count = network.architecture()["styles"]  # type: ignore[operator]
    styles, blend = meta.get("styles"), meta.get("blend")
    if not isinstance(styles, list) or len(styles) != count or not all(isinstance(s, str) and s for s in styles):
        raise TexsynthError(f"{path}: styles: must be {count} names, one per style of the network")
    if len(set(styles)) != len(styles):
        raise TexsynthError(f"{path}: styles: names must differ, got {styles}")
    valid = (
        isinstance(blend, list)
        and len(blend) == count
        and all(isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w) and w >= 0 for w in blend)
        and sum(blend) > 0
    )
    if not valid:
        raise TexsynthError(f"{path}: blend: must be {count} weights >= 0 with a positive sum")
    total = float(sum(blend))  # type: ignore[arg-type]
    return tuple(styles), tuple(float(w) / total for w in blend)  # type: ignore[union-attr]


def _mapping(path: Path, meta: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = meta.get(key, {})
    if not isinstance(value, dict):
        raise TexsynthError(f"{path}: {key}: must be a JSON object")
    return value


def _load_weights(path: Path, network: Network, tensors: Mapping[str, Tensor], prefix: str) -> None:
    expected = network.state_dict()
    given = {name[len(prefix) :]: value for name, value in tensors.items() if name.startswith(prefix)}
    missing, unexpected = sorted(set(expected) - set(given)), sorted(set(given) - set(expected))
    if missing or unexpected:
        detail = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
        raise TexsynthError(f"{path}: the tensors do not fit the stated architecture ({detail})")
    for name, value in expected.items():
        if tuple(given[name].shape) != tuple(value.shape):
            raise TexsynthError(
                f"{path}: {name} has shape {tuple(given[name].shape)}; the architecture needs {tuple(value.shape)}"
            )
        if not given[name].is_floating_point():
            raise TexsynthError(f"{path}: {name} must hold floating-point numbers, got {given[name].dtype}")
        if not bool(torch.isfinite(given[name]).all()):
            raise TexsynthError(f"{path}: {name} holds NaN or infinite values")
    network.load_state_dict({name: value.float() for name, value in given.items()})
