"""A transfer model as an ONNX file, for runtimes other than PyTorch (ONNX Runtime, TensorRT, browsers).

The exported graph keeps what makes a texsynth model more than one style:
its inputs are the photo and the style weights, so every blend stays a
choice made at run time, as with ``texsynth apply --blend``.

- ``photo``: float32 (N, 3, H, W), RGB in [0, 1]; H and W multiples of 4 (the
  network's stride; ``apply`` mirror-pads and crops back, a caller of the ONNX
  file pads its own way).
- ``blend``: float32 (N, S), one weight per style, in the order of the
  metadata's ``styles``; each row is divided by its sum, so ``[1, 2]`` is a
  third and two thirds.
- ``stylized``: float32 (N, 3, H, W) in [0, 1].

Batch, height and width are dynamic. The file's metadata (``metadata_props``)
holds the style names, the recipe's own blend, the model file's SHA-256 and
the texsynth version. Tiling with whole-photo statistics and
``--preserve-colour`` are ``apply``'s, not the graph's.

Texture generators are not exported: their input is a pyramid of noise that
a caller would have to draw exactly as ``texsynth sample`` does, and they make
a tile in milliseconds through ``sample`` already.

Needs the ``onnx`` and ``onnxscript`` packages (``pip install 'texsynth[export]'``).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import warnings
from pathlib import Path

import torch
from torch import Tensor, nn

from .._version import __version__
from ..errors import TexsynthError
from ..files import atomic_write
from .model_file import FastModel
from .networks import TransferNetwork

#: ONNX's operator set the files are written for (ONNX Runtime 1.17 and later read it).
OPSET = 18
ONNX_SUFFIX = ".onnx"
INPUTS = ("photo", "blend")
OUTPUTS = ("stylized",)


class _Exported(nn.Module):
    """The network with its blend normalized inside the graph, so callers may pass raw weights."""

    def __init__(self, network: TransferNetwork) -> None:
        super().__init__()
        self.network = network

    def forward(self, photo: Tensor, blend: Tensor) -> Tensor:
        return self.network(photo, blend / blend.sum(dim=1, keepdim=True))


def check_onnx_output(output: Path) -> Path:
    if output.suffix.lower() != ONNX_SUFFIX:
        raise TexsynthError(f"-o: {output}: an ONNX file must end in {ONNX_SUFFIX}")
    return output


def export_onnx(model: FastModel, output: Path) -> Path:
    """Write ``model`` (a transfer model) to ``output`` as ONNX, atomically; returns ``output``."""
    output = check_onnx_output(Path(output))
    network = model.transformer()
    try:
        import onnx
    except ImportError:
        raise TexsynthError("export needs the onnx and onnxscript packages: pip install 'texsynth[export]'") from None
    stride = network.stride
    batch = torch.export.Dim("batch", min=1, max=4096)
    height, width = torch.export.Dim("height", min=1, max=4096), torch.export.Dim("width", min=1, max=4096)
    example = (torch.rand(1, 3, 8 * stride, 12 * stride), torch.full((1, network.styles), 1.0))
    exported = _Exported(copy.deepcopy(network).float().cpu().eval())
    # The exporter narrates each of its stages on stdout and warns about its own internals; neither is the user's.
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), torch.no_grad():
        warnings.simplefilter("ignore")
        try:
            program = torch.onnx.export(
                exported,
                example,
                dynamo=True,
                opset_version=OPSET,
                input_names=list(INPUTS),
                output_names=list(OUTPUTS),
                dynamic_shapes={"photo": {0: batch, 2: stride * height, 3: stride * width}, "blend": {0: batch}},
                optimize=True,
            )
        except ImportError as error:
            raise TexsynthError(f"export needs the onnx and onnxscript packages ({error})") from None
    assert program is not None
    proto = program.model_proto
    metadata = {
        "texsynth": __version__,
        "kind": model.kind,
        "styles": json.dumps(list(model.styles)),
        "default_blend": json.dumps(list(model.blend)),
        "model_sha256": model.sha256 or "",
        "inputs": "photo: float32 (N, 3, H, W) RGB in [0, 1], H and W multiples of "
        f"{stride}; blend: float32 (N, {network.styles}) weights in the order of styles",
        "outputs": "stylized: float32 (N, 3, H, W) in [0, 1]",
    }
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name, proto.producer_version = "texsynth", __version__
    onnx.checker.check_model(proto)
    with atomic_write(output) as handle:
        handle.write(proto.SerializeToString())
    return output
