"""Issue 14, "also decide": SIGTERM and SIGHUP stop a run like Ctrl-C, an interrupt while texsynth starts is one
line, and weights that overflow the loss fail the run instead of writing the starting noise."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import torch
from typer.testing import CliRunner

from texsynth.cli import app
from texsynth.io import read_metadata

runner = CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1"})
RECIPE = {"version": 1, "size": 32, "steps": 100_000, "styles": [{"image": "images/brick.jpg"}]}


def texsynth(*args, env, cwd):
    return subprocess.Popen(
        [sys.executable, "-m", "texsynth", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
    )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_stop_a_bundle_run_like_ctrl_c(signum, write_recipe, tmp_path, subprocess_env):
    bundle = tmp_path / "long.texsynth.zip"
    assert runner.invoke(app, ["pack", str(write_recipe(**RECIPE)), "-o", str(bundle)]).exit_code == 0
    private_tmp = tmp_path / "tmp"
    private_tmp.mkdir()
    environment = {**subprocess_env, "TMPDIR": str(private_tmp)}
    process = texsynth("recipe", bundle, "-q", "--out-dir", "out", env=environment, cwd=tmp_path)
    deadline = time.monotonic() + 120  # the trace's temporary file appears with the first step
    while not list((tmp_path / "out").glob(".long.trace.jsonl.*.part")) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=60)

    assert process.returncode == 128 + signum, stderr
    assert b"Traceback" not in stderr and b"saved the best image so far" in stderr
    assert read_metadata(tmp_path / "out" / "long.png")["interrupted"] is True
    assert (tmp_path / "out" / "long.trace.jsonl").is_file(), "the trace is kept, as after Ctrl-C"
    assert not list(tmp_path.rglob("*.part"))
    assert list(private_tmp.iterdir()) == [], "the bundle's unpacked copy is removed"


def test_importing_texsynth_loads_torch_only_when_a_name_needs_it(subprocess_env):
    check = (
        "import sys, texsynth; assert 'torch' not in sys.modules; "
        "assert all(getattr(texsynth, name) is not None for name in texsynth.__all__)"
    )
    assert subprocess.run([sys.executable, "-c", check], env=subprocess_env).returncode == 0


def test_ctrl_c_while_starting_is_one_line(write_recipe, tmp_path, subprocess_env, snapshot):
    recipe = write_recipe(**RECIPE)
    before = snapshot(tmp_path)
    process = texsynth("recipe", recipe, "-q", env=subprocess_env, cwd=tmp_path)
    time.sleep(0.5)  # importing torch takes longer
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)

    assert process.returncode == 130, stderr
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted"), stderr
    if "after" not in lines[0]:  # a slow machine is still starting; a fast one may have begun the run
        assert snapshot(tmp_path) == before


def test_weights_that_overflow_the_loss_fail_the_run_and_write_nothing(
    write_recipe, tmp_path, refuses, tiny_vgg_weights
):
    torch.save(tiny_vgg_weights(1e30), tmp_path / "huge.pth")
    recipe = write_recipe(**{**RECIPE, "steps": 2, "weights": "huge.pth", "output": "x.png"})
    refuses("recipe", recipe, "-q", names=[recipe, "the loss became NaN or infinite", "nothing was written"])
