"""Issue 14, batch folders (items 14, 18, 19): a damaged manifest or tile is rebuilt, not trusted, and recipes
that would share a folder are refused before any tile is made. (Item 2, ownership: test_hostile_safety.py.)"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from texsynth.cli import app

runner = CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1"})
RECIPE = {"version": 1, "size": 32, "steps": 1, "styles": [{"image": "images/brick.jpg"}]}


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


# ------------------------------------------------------------------ 14. malformed entries in the recipe's own manifest


def test_14_malformed_manifest_entries_are_dropped_and_rebuilt_from_the_tiles(write_recipe, tmp_path):
    recipe, tiles = write_recipe(**RECIPE), tmp_path / "tiles"
    assert run("batch", recipe, "--count", "1", "--out", tiles, "-q").exit_code == 0
    manifest = json.loads((tiles / "manifest.json").read_text())
    malformed = [{}, "abc", None, {"index": "1"}, {"index": True}, {"index": 7, "file": "../../../etc/passwd"}]
    (tiles / "manifest.json").write_text(json.dumps({**manifest, "tiles": malformed}))

    result = run("batch", recipe, "--count", "1", "--out", tiles)

    assert result.exit_code == 0, result.output
    assert "made 0 tiles, 1 already done, 0 failed" in result.stderr
    rebuilt = json.loads((tiles / "manifest.json").read_text())
    assert [entry["file"] for entry in rebuilt["tiles"]] == ["tile-00000.png"]
    assert Image.open(tiles / "contact-sheet.png").size[0] > 0


# ------------------------------------------------------------------ 18. a damaged tile is not a finished one


def test_18_a_truncated_tile_is_made_again(write_recipe, tmp_path):
    recipe, tiles = write_recipe(**RECIPE), tmp_path / "tiles"
    assert run("batch", recipe, "--count", "2", "--out", tiles, "-q").exit_code == 0
    good = (tiles / "tile-00001.png").read_bytes()
    pixels = np.asarray(Image.open(tiles / "tile-00001.png"))
    (tiles / "tile-00001.png").write_bytes(good[: len(good) - 200])  # the text chunks survive, the pixels do not

    result = run("batch", recipe, "--count", "2", "--out", tiles)

    assert result.exit_code == 0, result.output
    assert "made 1 tiles, 1 already done" in result.stderr
    assert np.array_equal(np.asarray(Image.open(tiles / "tile-00001.png")), pixels), "made again, to the same pixels"
    Image.open(tiles / "contact-sheet.png").load()


# ------------------------------------------------------------------ 19. one folder per recipe, checked first


@pytest.mark.parametrize("how", ["same file name", "same name in another case", "the same recipe twice"])
def test_19_recipes_that_would_share_a_folder_are_refused_before_any_work(how, write_recipe, tmp_path, refuses):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = write_recipe("a/brick.yaml", **{**RECIPE, "styles": [{"image": "../images/brick.jpg"}]})
    other = {"same file name": "b/brick.yaml", "same name in another case": "b/Brick.yaml"}.get(how)
    grass = {**RECIPE, "styles": [{"image": "../images/grass.jpg"}]}
    second = write_recipe(other, **grass) if other else first
    refuses("batch", first, second, "--count", "1", "--out", tmp_path / "tiles", names=[second, first, "tiles"])
