"""Shared fixtures: small real images from the shipped recipes and a fast recipe builder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
import yaml

# Tests run at 32-64 px, where torch's intra-op threads cost more in hand-offs than
# they save, and on a shared machine oversubscribed threads spin: on a busy 2-core
# box the suite took 8 minutes with torch's default threads and 1.5 with one.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "recipes" / "images"

#: What every Python subprocess of a test gets: one thread (the in-process
#: setting above does not reach a child, and two children with two threads
#: each on two cores took the SIGKILL test from 31 s to 191 s) and this
#: checkout's texsynth first on its path.
SUBPROCESS_ENV = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
}


@pytest.fixture
def subprocess_env() -> dict[str, str]:
    """The environment for a Python subprocess: this one's, with SUBPROCESS_ENV on top."""
    return {**os.environ, **SUBPROCESS_ENV}


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """A private copy of the shipped images, so tests may write beside them."""
    folder = tmp_path / "images"
    shutil.copytree(IMAGES, folder)
    return folder


@pytest.fixture
def write_recipe(tmp_path: Path, images: Path):
    """Write a small, fast recipe YAML into tmp_path and return its path."""

    def write(name: str = "recipe.yaml", text: str | None = None, **fields) -> Path:
        path = tmp_path / name
        if text is None:
            data = {"version": 1, "size": 64, "steps": 5, "seed": 0, "styles": [{"image": "images/brick.jpg"}]}
            data.update(fields)
            text = yaml.safe_dump(data, sort_keys=False)
        path.write_text(text)
        return path

    return write


def folder_snapshot(folder: Path) -> dict[str, bytes | None]:
    """Every file and folder under ``folder`` (hidden ones too) with its bytes (None for a folder)."""
    return {
        str(path.relative_to(folder)): None if path.is_dir() else path.read_bytes()
        for path in sorted(folder.rglob("*"))
    }


@pytest.fixture
def snapshot():
    """``snapshot(folder)``: every file under it with its bytes, to compare before and after."""
    return folder_snapshot


@pytest.fixture
def refuses(tmp_path):
    """Run the CLI and check the bad-input promise; returns the one line.

    Exit code 2, exactly one line on stderr starting ``error:`` and naming each
    of ``names``, no traceback, and ``folder`` (default: the test's tmp_path)
    unchanged byte for byte: nothing created, changed or left behind.
    """
    from typer.testing import CliRunner

    from texsynth.cli import app

    def check(*args, names=(), folder: Path | None = None) -> str:
        folder = folder or tmp_path
        before = folder_snapshot(folder)
        result = CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1"}).invoke(app, [str(a) for a in args])
        assert result.exit_code == 2, (result.output, result.exception)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        for name in names:
            assert str(name) in lines[0], (name, lines[0])
        assert "Traceback" not in result.output
        assert folder_snapshot(folder) == before, "a refused command must leave every file as it was"
        return lines[0]

    return check


@pytest.fixture
def tiny_vgg_weights():
    """Make a torchvision-style VGG19 state dict of the right shapes that takes no space: every value
    ``fill`` (expanded from one number), with ``changes`` on top."""
    from texsynth.features import _TABLE, _TORCHVISION_CONV_INDEX

    def make(fill: float = 0.0, **changes) -> dict:
        channels = {name: (inputs, outputs) for name, inputs, outputs in _TABLE}
        state = {}
        for name, index in _TORCHVISION_CONV_INDEX.items():
            inputs, outputs = channels[name]
            state[f"{index}.weight"] = torch.full((1,), fill).expand(outputs, inputs, 3, 3)
            state[f"{index}.bias"] = torch.full((1,), fill).expand(outputs)
        return {**state, **changes}

    return make
