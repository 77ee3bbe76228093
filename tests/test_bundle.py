"""Bundles: pack a recipe with its images, run it from the zip elsewhere, and refuse every unsafe zip."""

from __future__ import annotations

import io
import shutil
import stat
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from texsynth import bundle as bundle_module
from texsynth.cli import app
from texsynth.io import read_metadata

runner = CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1"})


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"))


def files_under(folder: Path) -> list[Path]:
    return sorted(p.relative_to(folder) for p in folder.rglob("*"))


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    """Bundles unpack under here, so a test can see that nothing is left behind."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr("tempfile.tempdir", str(folder))
    return folder


@pytest.fixture
def packed(write_recipe, tmp_path) -> Path:
    recipe = write_recipe(
        "wall.yaml",
        size=48,
        steps=3,
        styles=[{"image": "images/brick.jpg", "weight": 0.7}, {"image": "images/grass.jpg", "weight": 0.3}],
        content={"image": "images/chelsea.jpg"},
        preserve_colour="histogram",
        output="renders/wall.png",
    )
    result = run("pack", recipe, "-o", tmp_path / "wall.texsynth.zip")
    assert result.exit_code == 0, result.output
    return tmp_path / "wall.texsynth.zip"


def test_a_packed_recipe_runs_from_the_zip_elsewhere_and_gives_the_same_image(
    packed, tmp_path, monkeypatch, private_tmp
):
    assert run("recipe", tmp_path / "wall.yaml", "-q", "--device", "cpu").exit_code == 0
    # "Another machine": only the zip, in a fresh folder, with the original images gone.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    shutil.copy(packed, elsewhere / "wall.texsynth.zip")
    shutil.rmtree(tmp_path / "images")
    monkeypatch.chdir(elsewhere)
    result = run("recipe", "wall.texsynth.zip", "-q", "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert np.array_equal(pixels(elsewhere / "out" / "wall.png"), pixels(tmp_path / "renders" / "wall.png"))
    meta = read_metadata(elsewhere / "out" / "wall.png")
    assert meta["bundle"]["name"] == "wall.texsynth.zip"
    assert meta["recipe"]["styles"][0]["image"] == "images/brick.jpg"
    assert set(meta["inputs"]) == {"images/brick.jpg", "images/grass.jpg", "images/chelsea.jpg"}
    assert list(private_tmp.iterdir()) == [], "the unpacked bundle must be removed"


def test_the_bundle_holds_the_effective_recipe_with_relative_paths_and_a_manifest(packed):
    with zipfile.ZipFile(packed) as archive:
        names = archive.namelist()
        recipe = yaml.safe_load(archive.read("recipe.yaml"))
    assert names == [
        "recipe.yaml",
        "images/brick.jpg",
        "images/grass.jpg",
        "images/chelsea.jpg",
        "texsynth-bundle.json",
    ]
    assert [s["image"] for s in recipe["styles"]] == ["images/brick.jpg", "images/grass.jpg"]
    assert recipe["content"]["image"] == "images/chelsea.jpg" and recipe["preserve_colour"] == "histogram"
    assert "output" not in recipe and recipe["steps"] == 3


def test_packing_is_reproducible_and_stores_a_shared_image_once(write_recipe, tmp_path, images):
    (images / "more").mkdir()
    shutil.copy(images / "grass.jpg", images / "more" / "brick.jpg")  # same name, other picture
    recipe = write_recipe(
        styles=[
            {"image": "images/brick.jpg"},
            {"image": "images/more/brick.jpg"},
            {"image": "images/brick.jpg", "scale": 2.0},
        ]
    )
    for name in ("a.zip", "b.zip"):
        assert run("pack", recipe, "-o", tmp_path / name).exit_code == 0
    assert (tmp_path / "a.zip").read_bytes() == (tmp_path / "b.zip").read_bytes()
    with zipfile.ZipFile(tmp_path / "a.zip") as archive:
        bundled = yaml.safe_load(archive.read("recipe.yaml"))
        assert archive.namelist() == ["recipe.yaml", "images/brick.jpg", "images/brick-2.jpg", "texsynth-bundle.json"]
    assert [s["image"] for s in bundled["styles"]] == ["images/brick.jpg", "images/brick-2.jpg", "images/brick.jpg"]


def test_out_dir_and_o_choose_where_a_bundle_writes(packed, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run("recipe", packed, "--out-dir", "renders2", "--steps", "1", "-q").exit_code == 0
    assert (tmp_path / "renders2" / "wall.png").is_file()
    assert run("recipe", packed, "-o", tmp_path / "mine.png", "--steps", "1", "-q").exit_code == 0
    assert (tmp_path / "mine.png").is_file()


def test_validate_and_dry_run_accept_a_bundle(packed):
    assert run("validate", packed).stdout.strip() == f"ok: {packed}"
    assert yaml.safe_load(run("recipe", packed, "--dry-run").stdout)["styles"][0]["weight"] == 0.7


def test_a_recipe_using_custom_weights_is_not_packed(write_recipe, tmp_path):
    (tmp_path / "vgg.pth").write_bytes(b"x")
    result = run("pack", write_recipe(weights="vgg.pth"), "-o", tmp_path / "x.zip")
    assert result.exit_code == 2 and "weights: a bundle cannot carry VGG weights" in result.stderr
    assert not (tmp_path / "x.zip").exists()


# ------------------------------------------------------------------ hostile bundles


RECIPE = {"version": 1, "size": 32, "steps": 1, "styles": [{"image": "images/brick.jpg"}]}


def make_zip(path: Path, entries: list[tuple[str | zipfile.ZipInfo, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about the duplicate entry we want
        for name, data in entries:
            archive.writestr(name, data)
    return path


def symlink(name: str, target: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def good_entries(images: Path, recipe: dict | None = None) -> list:
    return [
        ("recipe.yaml", yaml.safe_dump(recipe or RECIPE).encode()),
        ("images/brick.jpg", (images / "brick.jpg").read_bytes()),
    ]


def lying_sizes(images: Path) -> bytes:
    """A zip whose headers claim 10 bytes for a 1000-byte entry."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("recipe.yaml", yaml.safe_dump(RECIPE))
        archive.writestr("notes.txt", b"n" * 1000)
    data = bytearray(buffer.getvalue())
    size = (1000).to_bytes(4, "little")
    for start in [i for i in range(len(data)) if data[i : i + 4] == size]:
        data[start : start + 4] = (10).to_bytes(4, "little")
    return bytes(data)


HOSTILE = {
    "zip slip": (lambda images: [*good_entries(images), ("../evil.txt", b"x")], "../evil.txt: entry path escapes"),
    "nested zip slip": (lambda images: [*good_entries(images), ("images/../../evil.txt", b"x")], "escapes the bundle"),
    "absolute path": (
        lambda images: [*good_entries(images), ("/tmp/evil.txt", b"x")],
        "absolute paths are not allowed",
    ),
    "drive path": (lambda images: [*good_entries(images), ("C:/evil.txt", b"x")], "absolute paths are not allowed"),
    "backslash": (lambda images: [*good_entries(images), ("..\\evil.txt", b"x")], "backslashes"),
    "symlink": (
        lambda images: [*good_entries(images), (symlink("images/link.jpg", "/etc/passwd"), b"/etc/passwd")],
        "symbolic links",
    ),
    "too many files": (
        lambda images: [*good_entries(images), *[(f"f{i}.txt", b"") for i in range(64)]],
        "at most 64 are allowed",
    ),
    "zip bomb": (lambda images: [*good_entries(images), ("zeros.bin", bytes(4 * 2**20))], "refused as a zip bomb"),
    "duplicate entry": (lambda images: [*good_entries(images), ("images/brick.jpg", b"other")], "appears twice"),
    "no recipe": (lambda images: good_entries(images)[1:], "needs exactly one recipe"),
    "reads outside": (
        lambda images: good_entries(images, {**RECIPE, "styles": [{"image": str(images / "brick.jpg")}]}),
        "styles[0].image: a bundled recipe may only read files inside the bundle",
    ),
    "reads outside relatively": (
        lambda images: good_entries(images, {**RECIPE, "styles": [{"image": "../../images/brick.jpg"}]}),
        "styles[0].image: ",
    ),
    "writes outside": (
        lambda images: good_entries(images, {**RECIPE, "output": "../../escape.png"}),
        "output: '../../escape.png' would write outside the output folder",
    ),
    "writes to an absolute path": (
        lambda images: good_entries(images, {**RECIPE, "output": "/tmp/escape.png"}),
        "would write outside the output folder",
    ),
    "names weights": (
        lambda images: [*good_entries(images, {**RECIPE, "weights": "vgg.pth"}), ("vgg.pth", b"x")],
        "weights: a bundled recipe cannot name weights files",
    ),
    "future recipe": (
        lambda images: good_entries(images, {**RECIPE, "version": 7}),
        "recipe.yaml: version: this recipe is format version 7",
    ),
    "unsafe yaml": (
        lambda images: [("recipe.yaml", b"steps: !!python/object/apply:os.system ['true']\n")],
        "recipe.yaml: line 1: invalid YAML",
    ),
    "bad manifest hash": (
        lambda images: [
            *good_entries(images),
            ("texsynth-bundle.json", b'{"format": 1, "recipe": "recipe.yaml", "files": {"recipe.yaml": "00"}}'),
        ],
        "recipe.yaml: does not match its hash in the manifest",
    ),
    "future bundle format": (
        lambda images: [*good_entries(images), ("texsynth-bundle.json", b'{"format": 9, "recipe": "r", "files": {}}')],
        "bundle format 9 is newer",
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_bundle_is_one_clean_line_exit_2_and_writes_nothing(case, tmp_path, images, monkeypatch, private_tmp):
    entries, expected = HOSTILE[case]
    bundle = make_zip(tmp_path / "shared.texsynth.zip", entries(images))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    before = files_under(tmp_path)

    result = run("recipe", bundle)

    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {bundle}"), result.stderr
    assert expected in lines[0], lines[0]
    assert "Traceback" not in result.output
    assert list(private_tmp.iterdir()) == [], "the unpacked files must be removed"
    assert files_under(tmp_path) == before
    assert not Path("/tmp/evil.txt").exists() and not Path("/tmp/escape.png").exists()


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"this is not a zip at all", "not a readable bundle (corrupt zip"),
        (None, "corrupt zip"),  # a real bundle cut in half
        ("lying", "corrupt zip"),
    ],
)
def test_a_corrupt_zip_is_one_clean_line(data, expected, tmp_path, images, packed, private_tmp):
    bundle = tmp_path / "broken.texsynth.zip"
    if data is None:
        data = packed.read_bytes()[: packed.stat().st_size // 2]
    elif data == "lying":
        data = lying_sizes(images)
    bundle.write_bytes(data)
    result = run("recipe", bundle)
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and expected in result.stderr, result.stderr
    assert list(private_tmp.iterdir()) == []


def test_size_caps_count_real_bytes(tmp_path, images, monkeypatch):
    monkeypatch.setattr(bundle_module, "MAX_FILE_BYTES", 10_000)
    result = run("recipe", make_zip(tmp_path / "big.zip", good_entries(images)))
    assert (
        result.exit_code == 2 and "images/brick.jpg" in result.stderr and "over the 10000 byte limit" in result.stderr
    )
    monkeypatch.setattr(bundle_module, "MAX_FILE_BYTES", 10**9)
    monkeypatch.setattr(bundle_module, "MAX_TOTAL_BYTES", 10_000)
    result = run("recipe", make_zip(tmp_path / "big.zip", good_entries(images)))
    assert result.exit_code == 2 and "unpacks to more than 10000 bytes" in result.stderr


def test_images_over_the_decompression_bomb_limit_are_refused(tmp_path, images, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    result = run("recipe", make_zip(tmp_path / "bomb.zip", good_entries(images)))
    assert result.exit_code == 2, result.output
    assert "styles[0].image: image is too large to open safely (over 1000 pixels)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
