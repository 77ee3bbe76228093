"""Issue 14, writing (items 10, 11, 16, 17, 20): every writer checks its output before any work, a write that
fails anyway is one line with no temporary file left, and what `new` and `pack` write loads back."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import zipfile

import pytest
from PIL import Image
from typer.testing import CliRunner

from texsynth import bundle as bundle_module
from texsynth import files
from texsynth.cli import app
from texsynth.recipe import load_recipe

runner = CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1"})
RECIPE = {"version": 1, "size": 32, "steps": 1, "styles": [{"image": "images/brick.jpg"}]}


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def read_only_folder(tmp_path):
    """A folder no file can be created in (for root, whom permissions do not stop: a read-only mount)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)
        return
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("cannot make a read-only folder here (root, and no mount)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


# ------------------------------------------------------------------ 10. output problems found before the run


def test_10_a_name_too_long_for_the_file_system_is_found_before_the_run(write_recipe, tmp_path, refuses):
    recipe = write_recipe(**RECIPE)
    refuses("recipe", recipe, "-o", tmp_path / ("x" * 250 + ".png"), names=[recipe, "too long for the file system"])
    long_name = write_recipe("long.yaml", **{**RECIPE, "output": "x" * 250 + ".png"})
    refuses("validate", long_name, names=[long_name, "output: the file name", "too long"])
    trace_too_long = tmp_path / ("x" * 236 + ".png")  # fits, but x.trace.jsonl's temporary name does not
    refuses("recipe", recipe, "-o", trace_too_long, names=["trace: ", "too long"])


def test_10_a_folder_that_takes_no_file_is_found_before_the_run(write_recipe, read_only_folder, refuses):
    recipe = write_recipe(**RECIPE)
    refuses("recipe", recipe, "-o", read_only_folder / "x.png", names=[recipe, f"folder {read_only_folder}"])


def test_10_a_full_disk_is_one_line_and_leaves_no_temporary_file(write_recipe, tmp_path, monkeypatch):
    def full(descriptor):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(files.os, "fsync", full)
    recipe = write_recipe(**{**RECIPE, "output": "out/x.png"})
    result = run("recipe", recipe, "-q")
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == f"error: cannot write {tmp_path / 'out' / 'x.png'}: No space left on device"
    assert not [path for path in tmp_path.rglob("*") if path.name.endswith(".part") or path.suffix == ".jsonl"]
    assert not (tmp_path / "out" / "x.png").exists()


# ------------------------------------------------------------------ 11. writers that skipped the output checks


def test_11_every_writer_refuses_an_output_that_is_a_folder(write_recipe, tmp_path, images, refuses):
    recipe = write_recipe(**RECIPE)
    for name in ("x.texsynth.zip", "x.yaml", "x.json", "x.png"):
        (tmp_path / name).mkdir()
    refuses("pack", recipe, "-o", tmp_path / "x.texsynth.zip", names=["-o: ", "x.texsynth.zip is a folder"])
    refuses("new", "--style", images / "brick.jpg", "-o", tmp_path / "x.yaml", "--force", names=["-o: ", "is a folder"])
    refuses("schema", "-o", tmp_path / "x.json", names=["-o: ", "x.json is a folder"])
    refuses("tile-preview", images / "circle.png", "-o", tmp_path / "x.png", names=["-o: ", "x.png is a folder"])


def test_11_pack_into_a_folder_that_takes_no_file(write_recipe, read_only_folder, refuses):
    refuses("pack", write_recipe(**RECIPE), "-o", read_only_folder / "x.texsynth.zip", names=["-o: ", "not writable"])


@pytest.mark.parametrize("name", ["manifest.json", "contact-sheet.png", ".manifest.lock", "tile-00000.png"])
def test_11_a_batch_folder_whose_file_names_are_folders(name, write_recipe, tmp_path, refuses):
    (tmp_path / "tiles" / name).mkdir(parents=True)
    recipe = write_recipe(**RECIPE)
    line = refuses("batch", recipe, "--count", "1", "--out", tmp_path / "tiles", names=["--out: ", name])
    assert "is a folder" in line or "is not a file" in line


# ------------------------------------------------------------------ 16. limits on memory


def test_16_limits_on_tile_count_and_preview_size(write_recipe, tmp_path, refuses):
    refuses("batch", write_recipe(**RECIPE), "--count", "1000000000", "--out", "t", names=["--count: must be at most"])
    Image.new("RGB", (1024, 1024)).save(tmp_path / "large.png")
    refuses("tile-preview", tmp_path / "large.png", "--grid", "16", names=["--grid: 16×16 repeats", "16384x16384"])


def test_16_the_contact_sheet_shows_at_most_its_limit(tmp_path, monkeypatch):
    from texsynth import tile_folder
    from texsynth.io import save_image

    monkeypatch.setattr(tile_folder, "MAX_SHEET_TILES", 4)
    tiles = [{"index": index, "file": tile_folder.tile_name(index)} for index in range(9)]
    for entry in tiles:
        save_image(Image.new("RGB", (16, 16)), tmp_path / entry["file"])
    (tmp_path / "manifest.json").write_text(json.dumps({"identity": "x", "tiles": tiles}))
    sheet = tile_folder.write_contact_sheet(tmp_path)
    assert sheet is not None and Image.open(sheet).size == (32, 32)


# ------------------------------------------------------------------ 17. pack never writes what the reader refuses


def test_17_pack_makes_a_backslash_name_safe_and_the_bundle_runs(write_recipe, tmp_path, images):
    shutil.copy(images / "brick.jpg", tmp_path / "a\\b.jpg")
    recipe = write_recipe(**{**RECIPE, "styles": [{"image": "a\\b.jpg"}]})
    assert run("pack", recipe, "-o", tmp_path / "x.texsynth.zip").exit_code == 0
    assert "images/a_b.jpg" in zipfile.ZipFile(tmp_path / "x.texsynth.zip").namelist()
    result = run("validate", tmp_path / "x.texsynth.zip")
    assert result.exit_code == 0, result.output


def test_17_pack_refuses_more_or_larger_files_than_the_reader_takes(write_recipe, tmp_path, monkeypatch, refuses):
    for index in range(70):
        Image.new("RGB", (16, 16), (index, 0, 0)).save(tmp_path / f"m{index}.png")
    many = write_recipe("many.yaml", **{**RECIPE, "styles": [{"image": f"m{i}.png"} for i in range(70)]})
    out = tmp_path / "many.texsynth.zip"
    refuses("pack", many, "-o", out, names=[f"{out}: bundle has 65 entries; at most 64 are allowed"])
    monkeypatch.setattr(bundle_module, "MAX_FILE_BYTES", 10_000)
    big = tmp_path / "big.texsynth.zip"
    refuses("pack", write_recipe(**RECIPE), "-o", big, names=[f"{big}: images/brick.jpg:", "over the 10000 byte limit"])


# ------------------------------------------------------------------ 20. new writes paths that load back


NAMES = ["a#b.jpg", "a: b.jpg", "*a.jpg", "[a.jpg", "%a.jpg", "@a.jpg", "a\tb.jpg", " a.jpg", "123", "null", "yes"]


@pytest.mark.parametrize("name", [*NAMES, "a  # b.jpg", "~", "~x", "'q'.jpg", '"q".jpg', "a\nb.jpg"])
def test_20_new_writes_image_paths_that_load_back_as_the_same_paths(name, tmp_path, images):
    shutil.copy(images / "brick.jpg", tmp_path / name)
    shutil.copy(images / "chelsea.jpg", tmp_path / f"c{name}")
    result = run("new", "--style", tmp_path / name, "--content", tmp_path / f"c{name}", "-o", tmp_path / "r.yaml")
    assert result.exit_code == 0, result.output
    recipe = load_recipe(tmp_path / "r.yaml")
    assert recipe.styles[0].image == (tmp_path / name).resolve()
    assert recipe.content is not None and recipe.content.image == (tmp_path / f"c{name}").resolve()
