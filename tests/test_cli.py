"""The texsynth command, through typer's CliRunner: good runs, and every bad input as one clean line."""

from __future__ import annotations

import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from texsynth import __version__
from texsynth.cli import app
from texsynth.io import read_metadata

runner = CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1"})


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_recipe_writes_the_image_with_its_recipe_embedded(write_recipe, tmp_path):
    path = write_recipe(output="renders/brick.png", steps=3)
    result = run("recipe", path)
    assert result.exit_code == 0, result.output
    out = tmp_path / "renders" / "brick.png"
    assert Image.open(out).size == (64, 64)
    meta = read_metadata(out)
    assert meta["texsynth"] == __version__ and meta["seed"] == 0
    assert meta["recipe"]["steps"] == 3 and meta["recipe"]["styles"][0]["image"].endswith("brick.jpg")
    assert set(meta["inputs"]) == {meta["recipe"]["styles"][0]["image"]}
    assert f"wrote {out}" in result.stderr
    assert not list(out.parent.glob(".*.part")), "temporary file left behind"


def test_options_override_the_recipe(write_recipe, tmp_path):
    out = tmp_path / "o.jpg"
    result = run("recipe", write_recipe(), "--size", "48x32", "--steps", "2", "--seed", "9", "-o", out, "--quiet")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert Image.open(out).size == (48, 32)
    meta = read_metadata(out)
    assert meta["seed"] == 9 and meta["recipe"]["steps"] == 2 and meta["recipe"]["size"] == [48, 32]


def test_same_recipe_seed_and_device_give_identical_files(write_recipe, tmp_path):
    path = write_recipe(steps=4)
    for name in ("a.png", "b.png"):
        assert run("recipe", path, "-o", tmp_path / name, "--device", "cpu", "-q").exit_code == 0
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_dry_run_prints_the_effective_recipe_and_writes_nothing(write_recipe, tmp_path):
    result = run("recipe", write_recipe(steps=9), "--seed", "4", "--dry-run")
    assert result.exit_code == 0, result.output
    effective = yaml.safe_load(result.stdout)
    assert effective["steps"] == 9 and effective["seed"] == 4
    assert effective["optimizer"] == "lbfgs" and effective["init"] == "noise"
    assert effective["style_layers"]["relu5_1"] == 1.0
    assert not (tmp_path / "out").exists()


def test_progress_bar_shows_steps_and_losses(write_recipe):
    result = run("recipe", write_recipe(steps=3))
    assert result.exit_code == 0
    assert "3/3" in result.stderr and "style" in result.stderr


def test_help_explains_every_option():
    result = run("recipe", "--help")
    assert result.exit_code == 0
    for option in ("--output", "--size", "--steps", "--seed", "--device", "--weights", "--dry-run", "--quiet"):
        assert option in result.stdout
    assert "recipe" in run("--help").stdout
    assert run("--version").stdout.strip() == f"texsynth {__version__}"


# ------------------------------------------------------------------ bad input


def fields(**changes):
    data = {"version": 1, "size": 64, "steps": 2, "styles": [{"image": "images/brick.jpg"}], "output": "out/x.png"}
    data.update(changes)
    return yaml.safe_dump(data, sort_keys=False)


BAD_RECIPES = {
    "yaml syntax": ("version: 1\nstyles:\n  - image: [oops\n", "line "),
    "unknown field": (fields(colour="red"), "colour: unknown field"),
    "wrong type": (fields(steps="ten"), "steps: must be a whole number, got 'ten'"),
    "missing image": (fields(styles=[{"image": "images/nope.jpg"}]), "styles[0].image: no such file"),
    "not an image": (fields(styles=[{"image": "notes.txt"}]), "styles[0].image: not an image file"),
    "folder as image": (fields(styles=[{"image": "images"}]), "styles[0].image: not a file"),
    "zero weight": (
        fields(styles=[{"image": "images/brick.jpg"}, {"image": "images/grass.jpg", "weight": 0}]),
        "styles[1].weight: must be > 0, got 0",
    ),
    "negative weight": (fields(styles=[{"image": "images/brick.jpg", "weight": -2}]), "styles[0].weight: must be > 0"),
    "nan weight": (fields(styles=[{"image": "images/brick.jpg", "weight": float("nan")}]), "must be a finite number"),
    "all weights zero": (
        fields(styles=[{"image": "images/brick.jpg", "weight": 0}, {"image": "images/grass.jpg", "weight": 0.0}]),
        "styles[0].weight: must be > 0",
    ),
    "all layer weights zero": (fields(style_layers={"relu1_1": 0, "relu2_1": 0}), "style_layers.relu1_1: must be > 0"),
    "unknown layer": (fields(style_layers={"relu3_5": 1.0}), "style_layers: unknown VGG19 layer 'relu3_5'"),
    "unknown content layer": (
        fields(content={"image": "images/chelsea.jpg", "layers": {"conv9_9": 1}}),
        "content.layers: unknown VGG19 layer 'conv9_9'",
    ),
    "size too small": (fields(size=24), "size: 24 px is too small for relu5_1"),
    "size absurd": (fields(size=50000), "size: 50000 px is out of range"),
    "unknown optimizer": (fields(optimizer="sgd"), "optimizer: must be one of 'lbfgs' or 'adam', got 'sgd'"),
    "unknown pooling": (fields(pooling="median"), "pooling: must be one of 'max' or 'avg'"),
    "unknown init": (fields(init="zeros"), "init: must be one of 'noise', 'content', 'image' or 'style_mean'"),
    "output folder is a file": (fields(output="notes.txt/x.png"), "output: cannot create folder"),
    "output is a folder": (fields(output="images"), "output: unsupported image type"),
    "future version": (fields(version=7), "version: this recipe is format version 7"),
    "not a mapping": ("just a string\n", "a recipe must be a mapping of fields"),
}


@pytest.mark.parametrize("case", sorted(BAD_RECIPES))
def test_bad_recipe_is_one_clean_line_exit_2_and_no_file(case, tmp_path, images):
    text, expected = BAD_RECIPES[case]
    (tmp_path / "notes.txt").write_text("not an image")
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(text)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))

    result = run("recipe", recipe)

    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"error: {recipe}: "), lines[0]
    assert expected in lines[0]
    assert "Traceback" not in result.output
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_missing_recipe_file(tmp_path):
    result = run("recipe", tmp_path / "nowhere.yaml")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'nowhere.yaml'}: no such recipe file"


def test_bad_options_are_one_line_too(write_recipe, tmp_path):
    path = write_recipe()
    cases = {
        ("--size", "big"): "--size: must be a long side",
        ("--steps", "0"): "steps (from the command line): must be >= 1",
        ("--device", "tpu"): "--device: unknown device 'tpu'",
        ("-o", str(tmp_path / "x.gif")): "output (from the command line): unsupported image type '.gif'",
        ("--weights", str(tmp_path / "none.pth")): "weights (from the command line)",
    }
    for args, expected in cases.items():
        result = run("recipe", path, *args)
        assert result.exit_code == 2, (args, result.output)
        assert len(result.stderr.strip().splitlines()) == 1 and expected in result.stderr, (args, result.stderr)


def test_cuda_request_without_cuda_is_a_clear_error(write_recipe):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    result = run("recipe", write_recipe(), "--device", "cuda")
    assert result.exit_code == 2 and "--device: cuda is not available" in result.stderr


def test_a_bad_input_never_clobbers_an_existing_output(tmp_path, images):
    out = tmp_path / "keep.png"
    out.write_bytes(b"precious")
    recipe = tmp_path / "bad.yaml"
    recipe.write_text(fields(output="keep.png", styles=[{"image": "images/brick.jpg", "weight": -1}]))
    assert run("recipe", recipe).exit_code == 2
    assert out.read_bytes() == b"precious"


def test_metadata_is_json_in_jpeg_and_webp_too(write_recipe, tmp_path):
    for suffix in (".jpg", ".webp"):
        out = tmp_path / f"x{suffix}"
        assert run("recipe", write_recipe(steps=1), "-o", out, "-q").exit_code == 0
        assert read_metadata(out)["recipe"]["steps"] == 1


def test_console_script_usage_errors_are_one_line(tmp_path, subprocess_env):
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-m", "texsynth", "recipe", "x.yaml", "--steps", "abc"],
        capture_output=True,
        text=True,
        env=subprocess_env,
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "--steps" in result.stderr


def test_ctrl_c_saves_the_best_image_so_far_and_exits_130(write_recipe, tmp_path, subprocess_env):
    import signal
    import subprocess
    import sys
    import time

    path = write_recipe(steps=100_000, output="interrupted.png")
    process = subprocess.Popen(
        [sys.executable, "-m", "texsynth", "recipe", str(path), "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=subprocess_env,
    )
    # The trace's temporary file appears with the first step: then let a few more run.
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".interrupted.trace.jsonl.*.part")) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert b"Traceback" not in stderr and b"saved the best image so far" in stderr
    meta = read_metadata(tmp_path / "interrupted.png")
    assert meta["interrupted"] is True and 0 < meta["steps_done"] < 100_000
    trace = (tmp_path / "interrupted.trace.jsonl").read_text().splitlines()
    assert len(trace) >= meta["steps_done"] - 1 > 0, "the loss trace is kept after Ctrl-C too"
    assert not list(tmp_path.glob(".*.part"))


def test_help_shows_flags_without_a_value_and_choices_by_name():
    text = run("recipe", "--help").output
    flag_rows = [line for line in text.splitlines() if "--quiet" in line or "--dry-run" in line or "--help" in line]
    assert flag_rows and not any("<bool>" in line for line in flag_rows), flag_rows
    assert "<bool>" not in text
    assert "[max|avg]" in text and "[auto|fp32|bf16]" in text and "[none|luminance|histogram]" in text
    assert "[auto|gram|" in text  # the style losses (a long metavar wraps in the table)
    assert "<bool>" not in run("batch", "--help").output and "<bool>" not in run("--help").output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--size", "²"), "--size: must be a long side"),
        (("--scales", "²"), "scales (from the command line): must be 'auto' or a whole number"),
        (("--device", "cpu:abc"), "--device: unknown device 'cpu:abc'"),
        (("--save-every", "0"), "--save-every: must be at least 1, got 0"),
    ],
)
def test_odd_option_values_are_one_line(write_recipe, args, expected):
    result = run("recipe", write_recipe(), *args)
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and expected in result.stderr
