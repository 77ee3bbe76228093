"""Issue 14, property tests: random bytes and damaged real files as images, manifests and PNG metadata give a
result or one TexsynthError line, never anything else; random file names through `new` and `pack` load back
as the same paths."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin
from typer.testing import CliRunner

from texsynth.bundle import load_bundled_recipe, open_bundle
from texsynth.cli import app
from texsynth.errors import TexsynthError
from texsynth.io import load_image
from texsynth.provenance import describe, rerun_recipe, runnable_yaml
from texsynth.recipe import parse_recipe

IMAGES = Path(__file__).resolve().parents[1] / "recipes" / "images"
runner = CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1"})


def examples(default: int) -> settings:
    """``default`` examples (fewer than the loader's 150 where each decodes images); TEXSYNTH_FUZZ_EXAMPLES for more."""
    return settings(
        max_examples=int(os.environ.get("TEXSYNTH_FUZZ_EXAMPLES", default)),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("hostile-fuzz")
    shutil.copytree(IMAGES, folder / "images")
    return folder


@contextlib.contextmanager
def scratch(root: Path):
    """A fresh folder per example, removed after it."""
    folder = Path(tempfile.mkdtemp(dir=root))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def one_line_error(error: TexsynthError, source: str | None = None) -> None:
    for problem in error.problems:
        assert "\n" not in problem and len(problem) <= 2100, problem
        assert source is None or source in problem, (source, problem)


# ------------------------------------------------------------------ images: random bytes and damaged real files


REAL = {name: (IMAGES / name).read_bytes() for name in ("circle.png", "brick.jpg")}
damages = st.lists(st.tuples(st.floats(0, 1), st.integers(0, 64), st.binary(max_size=8)), min_size=1, max_size=4)
image_bytes = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda header, rest: header + rest, st.sampled_from([b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff"]),
              st.binary(max_size=300)),
    st.tuples(st.sampled_from(sorted(REAL)), damages).map(lambda case: damage(REAL[case[0]], case[1])),
)


def damage(data: bytes, cuts: list[tuple[float, int, bytes]]) -> bytes:
    for where, length, insert in cuts:
        start = int(where * len(data))
        data = data[:start] + insert + data[start + length :]
    return data


FIELDS = {
    "style": lambda name: {"styles": [{"image": name}]},
    "mask": lambda name: {"styles": [{"image": "../images/brick.jpg", "mask": name}], "style_loss": "gram"},
    "content": lambda name: {"content": {"image": name}},
    "init": lambda name: {"init_image": name},
}


@examples(60)
@given(data=image_bytes, field=st.sampled_from(sorted(FIELDS)), suffix=st.sampled_from([".png", ".jpg"]))
@example(data=REAL["circle.png"][:2000], field="style", suffix=".png")
@example(data=REAL["brick.jpg"], field="content", suffix=".jpg")  # undamaged: accepted, and it loads
def test_any_bytes_as_an_image_give_a_usable_recipe_or_one_line(root, data, field, suffix):
    with scratch(root) as folder:
        (folder / f"x{suffix}").write_bytes(data)
        fields = FIELDS[field](f"x{suffix}")
        recipe_data = {"size": 32, "steps": 1, "styles": [{"image": "../images/brick.jpg"}], **fields}
        try:
            recipe = parse_recipe(recipe_data, source="fuzz.yaml", base_dir=folder)
        except TexsynthError as error:
            one_line_error(error, "fuzz.yaml: ")
            return
        for _, path in recipe.input_images():  # accepted: every input then loads as a run would load it
            assert load_image(path, (32, 32)).shape == (1, 3, 32, 32)


# ------------------------------------------------------------------ bundle manifests


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=3),
    max_leaves=10,
)
entry_names = st.sampled_from(["recipe.yaml", "images/brick.jpg", "../x", "/abs", "a\\b", "", "images"])
manifests = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {},
        optional={
            "format": st.sampled_from([1, 2, 0, -1, "1", None, True, 1.0]) | json_values,
            "recipe": entry_names | json_values,
            "files": st.dictionaries(entry_names | st.text(max_size=8), st.text(max_size=64) | json_values, max_size=3)
            | json_values,
        },
    ),
)


@examples(100)
@given(manifest=manifests)
def test_any_manifest_gives_a_recipe_or_one_line(root, manifest):
    with scratch(root) as folder:
        bundle = folder / "b.zip"
        with zipfile.ZipFile(bundle, "w") as archive:
            archive.writestr("recipe.yaml", yaml.safe_dump({"size": 32, "styles": [{"image": "images/brick.jpg"}]}))
            archive.writestr("images/brick.jpg", REAL["brick.jpg"])
            archive.writestr("texsynth-bundle.json", json.dumps(manifest))
        try:
            with open_bundle(bundle) as opened:
                load_bundled_recipe(opened, out_dir=folder / "out")
        except TexsynthError as error:
            one_line_error(error, str(bundle))


# ------------------------------------------------------------------ PNG metadata


metadata = st.one_of(
    json_values.map(json.dumps),
    st.text(max_size=50),
    st.fixed_dictionaries(
        {"recipe": st.just({"size": 32, "styles": [{"image": "../images/brick.jpg"}]}) | json_values},
        optional={
            name: json_values | st.text(max_size=20).map(lambda text: f"{text}\noutput: /tmp/x.png\x1b\x85\u2028")
            for name in ("texsynth", "torch", "device", "seed", "steps_done", "losses", "inputs", "bundle")
        },
    ).map(json.dumps),
)


@examples(100)
@given(text=metadata)
@example(text=json.dumps({"recipe": {"output": "/tmp/x.png", "a\nb": "\x1b"}, "inputs": {"\n#": 1}}))
def test_any_png_metadata_is_shown_safely_or_refused_in_one_line(root, text):
    with scratch(root) as folder:
        info = PngImagePlugin.PngInfo()
        info.add_itxt("texsynth", text, zip=True)
        Image.new("RGB", (8, 8)).save(folder / "x.png", pnginfo=info)
        try:
            shown = runnable_yaml(describe(folder / "x.png"))
        except TexsynthError as error:
            one_line_error(error)
            return
        assert all(char == "\n" or char.isprintable() for char in shown)
        recipe = json.loads(text)["recipe"]
        assert yaml.safe_load(shown) == {key: value for key, value in recipe.items() if key != "output"}
        try:
            with rerun_recipe(folder / "x.png", out_dir=folder / "out") as rerun:
                assert rerun.recipe.output == (folder / "out" / "x.rerun.png").resolve()
        except TexsynthError as error:
            one_line_error(error)


# ------------------------------------------------------------------ random file names through new and pack


def usable_name(name: str) -> bool:
    try:
        return name not in (".", "..") and len(os.fsencode(name)) <= 120
    except UnicodeEncodeError:  # a lone surrogate no file system name can hold
        return False


names = st.text(st.characters(blacklist_characters="/\x00"), min_size=1, max_size=40).filter(usable_name)
#: Names YAML reads as something else, or that a recipe would expand, and one that is not valid UTF-8.
AWKWARD = ["null", "yes", "123", "~", "~x", " a", "a#b", "a: b", "[a", "*a", "%a", "@a", "a\tb", "'", "a\\b"]
AWKWARD.append("x\udc80y")


def with_examples(test):
    for name in AWKWARD:
        test = example(name=name)(test)
    return test


@examples(100)
@given(name=names)
@with_examples
def test_new_writes_any_file_name_so_that_it_loads_back_as_the_same_path(root, name):
    with scratch(root) as folder:
        shutil.copy(IMAGES / "brick.jpg", folder / name)
        result = runner.invoke(app, ["new", "--style", f"{folder / name}:1", "-o", str(folder / "r.yaml")])
        assert result.exit_code == 0, result.output
        with open(folder / "r.yaml", encoding="utf-8") as handle:
            data = yaml.safe_load(handle)
        recipe = parse_recipe(data, source="r.yaml", base_dir=folder)
        assert recipe.styles[0].image == (folder / name).resolve()


@examples(60)
@given(name=names)
@with_examples
def test_pack_carries_any_file_name_into_a_bundle_that_runs(root, name):
    with scratch(root) as folder:
        shutil.copy(IMAGES / "brick.jpg", folder / name)
        recipe = folder / "r.yaml"
        recipe.write_text(yaml.safe_dump({"size": 32, "styles": [{"image": f"./{name}"}]}), encoding="utf-8")
        result = runner.invoke(app, ["pack", str(recipe), "-o", str(folder / "r.texsynth.zip")])
        assert result.exit_code == 0, result.output
        with open_bundle(folder / "r.texsynth.zip") as bundle:
            packed, _ = load_bundled_recipe(bundle, out_dir=folder / "out")
            assert packed.styles[0].image.read_bytes() == (IMAGES / "brick.jpg").read_bytes()
            if "\\" not in name and not any(0xDC80 <= ord(char) <= 0xDCFF for char in name):
                assert packed.styles[0].image == bundle.root / "images" / name, "a name a zip can hold is kept"
