"""Provenance: `texsynth show` reads what an output says about itself; `texsynth recipe OUT.png` makes it again."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from texsynth import __version__
from texsynth.cli import app
from texsynth.io import read_metadata, save_image
from texsynth.recipe import load_recipe

runner = CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1"})


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def pixels(path):
    return np.asarray(Image.open(path).convert("RGB"))


@pytest.fixture
def made(write_recipe, tmp_path):
    """An output made from a small recipe, with its trace turned off to keep the folder simple."""
    recipe = write_recipe(
        size=32,
        steps=3,
        seed=5,
        output="made/brick.png",
        styles=[{"image": "images/brick.jpg"}, {"image": "images/gravel.jpg", "scale": 0.5}],
    )
    assert run("recipe", recipe, "-q", "--no-trace", "--device", "cpu").exit_code == 0
    return tmp_path / "made" / "brick.png"


def test_show_prints_recipe_seed_versions_and_input_hashes_as_a_runnable_recipe(made, tmp_path, images):
    result = run("show", made)
    assert result.exit_code == 0, result.output
    assert f"# made by texsynth {__version__}" in result.stdout and "on cpu" in result.stdout
    assert "# seed 5 (3 of 3 steps)" in result.stdout
    digest = read_metadata(made)["inputs"][str(images / "brick.jpg")]
    assert f"#   {images / 'brick.jpg'}  sha256 {digest}  (unchanged)" in result.stdout
    again = tmp_path / "again.yaml"
    again.write_text(result.stdout)
    recipe = load_recipe(again)
    assert recipe.seed == 5 and recipe.styles[1].scale == 0.5 and recipe.styles[1].image == images / "gravel.jpg"


def test_show_json_is_the_embedded_metadata(made):
    result = run("show", made, "--json")
    assert json.loads(result.stdout) == read_metadata(made)


def test_show_marks_changed_and_missing_inputs(made, images):
    shutil.copy(images / "grass.jpg", images / "brick.jpg")
    (images / "gravel.jpg").unlink()
    result = run("show", made)
    assert f"{images / 'brick.jpg'}  sha256" in result.stdout and "(changed)" in result.stdout
    assert "(missing)" in result.stdout


def test_an_output_runs_again_to_the_same_pixels(made, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("recipe", made, "-q", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    again = tmp_path / "out" / "brick.rerun.png"
    assert np.array_equal(pixels(again), pixels(made))
    assert read_metadata(again)["recipe"] == read_metadata(made)["recipe"]


def test_a_changed_input_is_a_warning_naming_the_file(made, tmp_path, images, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shutil.copy(images / "grass.jpg", images / "brick.jpg")
    result = run("recipe", made, "-q", "--steps", "1")
    assert result.exit_code == 0, result.output
    assert result.stderr.strip() == (
        f"warning: {images / 'brick.jpg'} has changed since {made} was made "
        "(its SHA-256 differs); the result may differ"
    )
    assert (tmp_path / "out" / "brick.rerun.png").is_file()


def test_a_missing_input_is_an_error(made, images, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (images / "gravel.jpg").unlink()
    result = run("recipe", made)
    assert result.exit_code == 2 and "styles[1].image: no such file" in result.stderr
    assert not (tmp_path / "out").exists()


def test_an_output_made_from_a_bundle_runs_from_the_bundle_again(write_recipe, tmp_path, monkeypatch):
    recipe = write_recipe(size=32, steps=2)
    assert run("pack", recipe, "-o", tmp_path / "b.texsynth.zip").exit_code == 0
    shutil.rmtree(tmp_path / "images")
    monkeypatch.chdir(tmp_path)
    assert run("recipe", "b.texsynth.zip", "-q", "--device", "cpu").exit_code == 0
    result = run("recipe", "out/b.png", "-q", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert np.array_equal(pixels(tmp_path / "out" / "b.rerun.png"), pixels(tmp_path / "out" / "b.png"))
    assert (
        read_metadata(tmp_path / "out" / "b.rerun.png")["bundle"] == read_metadata(tmp_path / "out" / "b.png")["bundle"]
    )


def test_versions_that_differ_are_warnings(made, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    meta = read_metadata(made)
    meta["texsynth"] = "0.0.1"
    save_image(Image.open(made), tmp_path / "old.png", meta)
    result = run("recipe", tmp_path / "old.png", "--dry-run")
    assert result.exit_code == 0
    assert f"warning: {tmp_path / 'old.png'} was made with texsynth 0.0.1, this is {__version__}" in result.stderr


@pytest.mark.parametrize("command", ["show", "recipe"])
def test_an_image_without_an_embedded_recipe_is_one_clean_line(command, tmp_path, images, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plain = tmp_path / "plain.png"
    Image.open(images / "brick.jpg").save(plain)
    result = run(command, plain)
    assert result.exit_code == 2
    assert (
        result.stderr.strip()
        == f"error: {plain}: no texsynth recipe embedded in this image "
        "(not made by texsynth, or re-saved by another program)"
    )
    assert not (tmp_path / "out").exists()


def test_an_embedded_recipe_from_a_future_version_is_refused(made, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    meta = read_metadata(made)
    meta["recipe"]["version"] = 7
    save_image(Image.open(made), tmp_path / "future.png", meta)
    result = run("recipe", tmp_path / "future.png")
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert (
        f"error: {tmp_path / 'future.png'} (embedded recipe): version: this recipe is format version 7" in result.stderr
    )


def test_show_on_a_file_that_is_not_an_image(tmp_path):
    (tmp_path / "notes.png").write_text("hello")
    result = run("show", tmp_path / "notes.png")
    assert result.exit_code == 2 and "not an image file" in result.stderr
