"""texsynth export: a transfer model as ONNX that ONNX Runtime runs to the same image, blends included."""

from __future__ import annotations

import json
import sys

import onnx
import onnxruntime
import pytest
import torch
from typer.testing import CliRunner

from texsynth.cli import app
from texsynth.errors import TexsynthError
from texsynth.fast import FastModel, TextureGenerator, TransferNetwork, load_model, save_model
from texsynth.fast.apply import stylize
from texsynth.fast.export import export_onnx

runner = CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1"})
#: ONNX Runtime's kernels round differently from torch's; the images agree to well under 1/255.
TOLERANCE = 1e-4


def two_style_model(path, kind="transfer"):
    """A small two-style network with every weight random (an untrained transfer network only recolours)."""
    torch.manual_seed(0)
    if kind == "transfer":
        network = TransferNetwork(styles=2, widths=[4, 8, 8], blocks=1, edge_kernel=3, padding="reflect")
    else:
        network = TextureGenerator(styles=2, widths=[8, 4], noise_channels=2, padding="circular")
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.copy_(torch.randn_like(parameter) * 0.3 + (1.0 if parameter.dim() == 2 else 0.0))
    model = FastModel(network=network, kind=kind, styles=("warm", "cold"), blend=(0.5, 0.5), recipe={})
    save_model(path, model)
    return load_model(path)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    model = two_style_model(folder / "two.safetensors")
    result = runner.invoke(app, ["export", str(folder / "two.safetensors"), "-o", str(folder / "two.onnx")])
    assert result.exit_code == 0, result.output
    return model, folder / "two.onnx"


def run_onnx(path, photo, blend):
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"photo": photo.numpy(), "blend": blend.numpy()})[0])


def test_onnx_runtime_gives_applys_image_at_any_size_and_blend(exported):
    model, path = exported
    photos = torch.rand(2, 3, 44, 68, generator=torch.Generator().manual_seed(1))
    results = {}
    for blend in ({"warm": 1.0}, {"warm": 1.0, "cold": 2.0}):
        weights = torch.tensor([[blend.get(name, 0.0) for name in model.styles]] * 2)
        ours = stylize(model, photos, blend=blend)
        theirs = run_onnx(path, photos, weights)
        assert theirs.shape == ours.shape == photos.shape
        assert (theirs - ours).abs().max() < TOLERANCE
        results[len(blend)] = theirs
    # The blend is an input of the graph, not baked into it.
    assert (results[1] - results[2]).abs().mean() > 0.01


def test_the_file_says_what_its_inputs_mean(exported):
    model, path = exported
    proto = onnx.load(str(path))
    metadata = {entry.key: entry.value for entry in proto.metadata_props}
    assert json.loads(metadata["styles"]) == ["warm", "cold"]
    assert json.loads(metadata["default_blend"]) == [0.5, 0.5]
    assert metadata["model_sha256"] == model.sha256
    assert [i.name for i in proto.graph.input] == ["photo", "blend"]
    assert [o.name for o in proto.graph.output] == ["stylized"]


def one_line_exit_2(result, expected):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in result.output, result.stderr


def test_a_texture_model_or_a_wrong_suffix_is_one_line_and_writes_nothing(tmp_path):
    two_style_model(tmp_path / "texture.safetensors", kind="texture")
    one_line_exit_2(
        runner.invoke(app, ["export", str(tmp_path / "texture.safetensors"), "-o", str(tmp_path / "t.onnx")]),
        "a texture model stylizes no photos",
    )
    two_style_model(tmp_path / "transfer.safetensors")
    one_line_exit_2(
        runner.invoke(app, ["export", str(tmp_path / "transfer.safetensors"), "-o", str(tmp_path / "t.pt")]),
        "an ONNX file must end in .onnx",
    )
    model = str(tmp_path / "transfer.safetensors")
    one_line_exit_2(runner.invoke(app, ["export", model, "-o", model]), "an ONNX file must end in .onnx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["texture.safetensors", "transfer.safetensors"]


def test_without_the_onnx_packages_export_says_what_to_install(tmp_path, monkeypatch):
    model = two_style_model(tmp_path / "transfer.safetensors")
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(TexsynthError, match=r"pip install 'texsynth\[export\]'"):
        export_onnx(model, tmp_path / "t.onnx")
    assert not (tmp_path / "t.onnx").exists()
