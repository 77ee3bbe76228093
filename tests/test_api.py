"""The documented Python names keep working where they moved, and the library names parameters, not flags."""

from __future__ import annotations

import pytest

import texsynth
from texsynth import api, targets
from texsynth.errors import TexsynthError


def test_moved_names_are_still_importable_from_their_old_homes():
    assert texsynth.Progress is texsynth.StepReport
    for name in ("compile_at", "make_extractor", "objective", "style_image_size", "Stage", "load_mask"):
        assert getattr(api, name) is getattr(targets, name), name
    from texsynth.cli import app, main  # the console script's entry point and the typer app

    assert callable(main) and app.registered_commands


def test_the_version_has_one_source():
    from importlib.metadata import version

    from texsynth._version import __version__

    assert texsynth.__version__ == __version__ == version("texsynth")


@pytest.mark.parametrize(
    ("requested", "expected"),
    [("tpu", "device: unknown device 'tpu'"), ("cpu:abc", "device: unknown device 'cpu:abc'"), ("cuda:x", "unknown")],
)
def test_pick_device_names_its_parameter(requested, expected):
    with pytest.raises(TexsynthError, match=expected):
        api.pick_device(requested)
    assert api.pick_device("cpu").type == "cpu"


def test_a_batch_from_python_names_its_parameters(tmp_path):
    from texsynth.tiles import run_batch

    with pytest.raises(TexsynthError, match="count: must be at least 1, got 0") as raised:
        run_batch([tmp_path / "x.yaml"], count=0, out=tmp_path / "tiles")
    assert "--" not in str(raised.value)
    with pytest.raises(TexsynthError, match="batch_size: must be at least 1"):
        run_batch([tmp_path / "x.yaml"], count=1, out=tmp_path / "tiles", batch_size=0)


def test_world_size_outside_torchrun_is_one_clean_error(monkeypatch):
    from texsynth.distributed import join_torchrun

    monkeypatch.setenv("WORLD_SIZE", "2")
    for name in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(TexsynthError, match="WORLD_SIZE is 2 but RANK is not set"):
        join_torchrun()
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(TexsynthError, match="WORLD_SIZE: must be a whole number"):
        join_torchrun()
