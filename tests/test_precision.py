"""``precision: auto``: bf16 where the hardware multiplies bf16 natively (CUDA, some CPUs), fp32 elsewhere."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from texsynth import targets as targets_module
from texsynth.cli import app
from texsynth.hardware import cpu_flags
from texsynth.io import read_metadata, save_image
from texsynth.recipe import Precision, load_recipe
from texsynth.targets import make_extractor, resolved_precision

runner = CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1"})

EPYC = (
    "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n\n"
    "processor\t: 1\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16\n"
)
XEON = "processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n"


def test_cpu_flags_are_those_every_processor_reports():
    assert {"avx512_bf16", "avx512f"} <= cpu_flags(EPYC) and "avx512_vnni" not in cpu_flags(EPYC)
    assert "avx512_bf16" not in cpu_flags(XEON)
    assert cpu_flags("model name\t: AMD EPYC with avx512_bf16\n") == frozenset(), "the model name is not a flag"


@pytest.mark.parametrize("native", [True, False])
def test_auto_is_bf16_on_a_cpu_only_where_it_multiplies_bf16_natively(native, write_recipe, monkeypatch):
    monkeypatch.setattr(targets_module, "cpu_has_native_bf16", lambda: native)
    cpu = torch.device("cpu")
    assert resolved_precision(Precision.AUTO, cpu) == ("bf16" if native else "fp32")
    assert resolved_precision(Precision.AUTO, torch.device("cuda")) == "bf16"
    assert resolved_precision(Precision.FP32, cpu) == "fp32" and resolved_precision(Precision.BF16, cpu) == "bf16"
    recipe = load_recipe(write_recipe(size=32))
    assert make_extractor(recipe, cpu).autocast == (torch.bfloat16 if native else None)


def test_an_output_records_its_precision_and_a_rerun_in_another_warns(write_recipe, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = write_recipe(size=32, steps=2, output="made.png")
    monkeypatch.setattr(targets_module, "cpu_has_native_bf16", lambda: False)
    assert runner.invoke(app, ["recipe", str(recipe), "-q", "--device", "cpu"]).exit_code == 0
    made = tmp_path / "made.png"
    meta = read_metadata(made)
    assert meta["precision"] == "fp32"
    shown = runner.invoke(app, ["show", str(made)])
    assert "on cpu in fp32" in shown.stdout
    again = runner.invoke(app, ["recipe", str(made), "--dry-run", "--device", "cpu"])
    assert again.exit_code == 0 and "pixels may differ" not in again.stderr
    # The same output on a CPU with native bf16, or one that says it was made in bf16:
    monkeypatch.setattr(targets_module, "cpu_has_native_bf16", lambda: True)
    again = runner.invoke(app, ["recipe", str(made), "--dry-run", "--device", "cpu"])
    assert f"warning: {made} was made in fp32, this run is in bf16" in again.stderr
    save_image(Image.open(made), tmp_path / "hostile.png", {**meta, "precision": "bf16\x1b[2J"})
    monkeypatch.setattr(targets_module, "cpu_has_native_bf16", lambda: False)
    again = runner.invoke(app, ["recipe", str(tmp_path / "hostile.png"), "--dry-run", "--device", "cpu"])
    assert "was made in bf16\\x1b[2J, this run is in fp32" in again.stderr and "\x1b" not in again.stderr
