"""Issue 14, safety and data loss (items 1-4): a stranger's file never chooses a path, nothing is clobbered,
and a message stays one short line whatever a file holds."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import yaml
from PIL import Image, PngImagePlugin
from typer.testing import CliRunner

from texsynth.cli import app
from texsynth.io import save_image
from texsynth.recipe import load_recipe

runner = CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1"})
RECIPE = {"version": 1, "size": 32, "steps": 1, "styles": [{"image": "images/brick.jpg"}]}


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def png_with_metadata(path, text: str) -> None:
    info = PngImagePlugin.PngInfo()
    info.add_itxt("texsynth", text, zip=True)
    Image.new("RGB", (32, 32)).save(path, pnginfo=info)


# ------------------------------------------------------------------ 1. show escapes what it prints


def test_1_show_output_means_only_what_the_embedded_recipe_says(tmp_path, images, monkeypatch):
    monkeypatch.chdir(tmp_path)
    chosen = tmp_path / "elsewhere" / "pwned.png"
    escape = f"\noutput: {chosen}\n"
    metadata = {
        "texsynth": "0.1.0\x1b[31m red",
        "torch": f"2.0{escape}",
        "device": "cpu\u2028output: x.png\x85output: y.png\r",
        "seed": escape,
        "steps_done": 1,
        "losses": {f"style{escape}": "1\x1b]0;title\x07", "tv": [1, 2]},
        "recipe": {**RECIPE, "output": str(chosen)},
        "inputs": {f"x{escape}y": f"abc{escape}", "z": 5},
        "bundle": {"path": f"b.zip{escape}", "sha256": escape},
    }
    png_with_metadata(tmp_path / "evil.png", json.dumps(metadata))

    result = run("show", tmp_path / "evil.png")

    assert result.exit_code == 0, result.output
    text = result.stdout
    assert all(char == "\n" or char.isprintable() for char in text), "no control character reaches the terminal"
    assert "\x1b" not in text and "\u2028" not in text and "\x85" not in text
    recipe_lines = [line for line in text.splitlines() if not line.startswith("#")]
    assert not any(line.startswith("output") for line in recipe_lines), text
    embedded = {key: value for key, value in metadata["recipe"].items() if key != "output"}
    assert yaml.safe_load(text) == embedded, "the YAML is the embedded recipe and nothing else"
    again = tmp_path / "again.yaml"
    again.write_text(text)
    assert load_recipe(again).output == tmp_path / "out" / "again.png", "the re-run writes where the user runs it"
    del metadata["bundle"]
    png_with_metadata(tmp_path / "no-bundle.png", json.dumps(metadata))
    rerun = run("recipe", tmp_path / "no-bundle.png", "--dry-run")
    assert rerun.exit_code == 0, rerun.output
    assert str(chosen) not in rerun.stdout, "re-running the image ignores the output it names"
    warnings = rerun.stderr.strip().splitlines()
    assert warnings and all(line.startswith("warning: ") and line.isprintable() for line in warnings), warnings


def test_1_show_of_a_real_output_still_runs_again(write_recipe, tmp_path):
    assert run("recipe", write_recipe(**{**RECIPE, "output": "made.png"}), "-q", "--no-trace").exit_code == 0
    result = run("show", tmp_path / "made.png")
    assert result.exit_code == 0
    (tmp_path / "again.yaml").write_text(result.stdout)
    recipe = load_recipe(tmp_path / "again.yaml")
    assert recipe.styles[0].image == tmp_path / "images" / "brick.jpg"
    assert recipe.output == tmp_path / "out" / "again.png"


# ------------------------------------------------------------------ 2. a batch never writes over another recipe's tiles


def foreign_tile(path, identity="0123456789abcdef", index=0):
    save_image(Image.new("RGB", (32, 32), "red"), path, {"seed": 1, "tile": {"identity": identity, "index": index}})


@pytest.mark.parametrize("manifest", ["missing", "corrupt", "not texsynth's"])
def test_2_a_batch_refuses_a_folder_whose_tiles_belong_to_another_recipe(manifest, write_recipe, tmp_path, refuses):
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    foreign_tile(tiles / "tile-00000.png")
    foreign_tile(tiles / "tile-00001.png", index=1)
    if manifest == "corrupt":
        (tiles / "manifest.json").write_text('{"identity": "0123')
    elif manifest == "not texsynth's":
        (tiles / "manifest.json").write_text('{"name": "my photos"}')
    line = refuses("batch", write_recipe(**RECIPE), "--count", "2", "--out", tiles, names=[tiles, "tile-00000.png"])
    assert "another recipe" in line and "--force" in line


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"manifest.json": b"{ damaged"}, "manifest.json is not a texsynth batch manifest"),
        ({"tile-00000.png": b"\x89PNG\r\n\x1a\n damaged"}, "tile-00000.png is not a readable texsynth tile"),
    ],
)
def test_2_files_nothing_claims_are_not_overwritten_either(files, expected, write_recipe, tmp_path, refuses):
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    for name, data in files.items():
        (tiles / name).write_bytes(data)
    line = refuses("batch", write_recipe(**RECIPE), "--count", "1", "--out", tiles, names=[tiles])
    assert expected in line


# ------------------------------------------------------------------ 3. an output is never one of its inputs


@pytest.mark.parametrize("field", ["styles[0].image", "styles[0].mask", "content.image", "init_image"])
def test_3_an_output_that_is_an_input_is_refused(field, write_recipe, tmp_path, images, refuses):
    shutil.copy(images / "circle.png", tmp_path / "input.png")
    fields = {
        "styles[0].image": {"styles": [{"image": "input.png"}]},
        "styles[0].mask": {"styles": [{"image": "images/brick.jpg", "mask": "input.png"}], "style_loss": "gram"},
        "content.image": {"content": {"image": "input.png"}},
        "init_image": {"init_image": "input.png"},
    }[field]
    recipe = write_recipe(**{**RECIPE, **fields, "output": "input.png"})
    for command in ("validate", "recipe"):
        refuses(command, recipe, names=[recipe, f"output: {tmp_path / 'input.png'} is also {field}"])
    os.link(tmp_path / "input.png", tmp_path / "linked.png")
    refuses("recipe", recipe, "-o", tmp_path / "linked.png", names=[recipe, "linked.png is also", field])


def test_3_other_outputs_are_never_inputs_either(write_recipe, tmp_path, images, refuses):
    shutil.copy(images / "circle.png", tmp_path / "input.png")
    recipe = write_recipe(**{**RECIPE, "styles": [{"image": "input.png"}]})
    refuses("recipe", recipe, "--preview", tmp_path / "input.png", names=["--preview", "styles[0].image"])
    refuses("tile-preview", tmp_path / "input.png", "-o", tmp_path / "input.png", names=["-o", "IMAGE"])
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    shutil.copy(images / "circle.png", tiles / "tile-00000.png")
    in_folder = write_recipe("in_folder.yaml", **{**RECIPE, "styles": [{"image": "tiles/tile-00000.png"}]})
    refuses("batch", in_folder, "--count", "1", "--out", tiles, "--force", names=[in_folder, "styles[0].image"])


# ------------------------------------------------------------------ 4. a message quotes a bounded part of a value


def test_4_aliases_cannot_make_a_message_huge(write_recipe, tmp_path, refuses):
    long = "x" * 50_000
    text = (
        f"a: &a {long}\n"
        "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
        "size: [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\nstyles:\n  - image: images/brick.jpg\n"
    )
    recipe = write_recipe(text=text)
    line = refuses("recipe", recipe, names=[recipe, "expands to more than"])
    assert len(line) < 300
    long_values = f"size: {'y' * 900_000}\nsteps: [{'z' * 90_000}]\n"
    quoted = write_recipe(text=long_values + "styles:\n  - image: images/brick.jpg\n")
    line = refuses("recipe", quoted, names=[quoted, "size:", "(900000 characters)"])
    assert len(line) < 400
    result = run("validate", quoted)
    assert result.exit_code == 2 and all(len(line) < 400 for line in result.stderr.splitlines())


def test_4_a_value_that_contains_itself_is_quoted_briefly(write_recipe, refuses):
    recipe = write_recipe(text="size: &a [1, *a]\nstyles:\n  - image: images/brick.jpg\n")
    line = refuses("recipe", recipe, names=[recipe, "expands to more than"])
    assert len(line) < 300
