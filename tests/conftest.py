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
