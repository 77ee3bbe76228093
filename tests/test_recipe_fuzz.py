"""Property tests: whatever YAML or data a shared recipe holds, the loader returns a valid Recipe
or raises the one texsynth error type, with a one-line message naming the file. Never anything else."""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from texsynth.errors import TexsynthError
from texsynth.recipe import Recipe, load_recipe, parse_recipe

IMAGES = Path(__file__).resolve().parents[1] / "recipes" / "images"

#: Modest by default to keep the suite fast; TEXSYNTH_FUZZ_EXAMPLES=5000 for a deeper search.
FUZZ = settings(
    max_examples=int(os.environ.get("TEXSYNTH_FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """A recipe folder with real images, shared by every example (nothing here writes into it)."""
    root = tmp_path_factory.mktemp("fuzz")
    shutil.copytree(IMAGES, root / "images")
    (root / "notes.txt").write_text("not an image")
    return root


# Anything YAML can hold, nested.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(["images/brick.jpg", "notes.txt", "images", "", "~", "/", "a\x00b"]),
)
anything = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8) | st.integers(), inner, max_size=3),
    max_leaves=12,
)
# Plausible values with plausible mistakes, so the fuzzing reaches deep into validation.
numbers = st.one_of(st.floats(), st.integers(-3, 10**6), st.just(0), st.text(max_size=4), st.booleans(), anything)
images = (
    st.sampled_from(
        [
            "images/brick.jpg",
            "images/grass.jpg",
            "images/chelsea.jpg",
            "images/missing.jpg",
            "notes.txt",
            "images",
            "/etc/passwd",
            "../../x.png",
        ]
    )
    | anything
)
layer_names = st.sampled_from(
    ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1", "conv1_1", "pool1", "relu6_1", "input", ""]
)
layers = st.dictionaries(layer_names, numbers, max_size=4) | anything
style = st.fixed_dictionaries({}, optional={"image": images, "weight": numbers, "scale": numbers, "colour": anything})
recipe_data = st.fixed_dictionaries(
    {},
    optional={
        "version": st.integers(-1, 3) | anything,
        "size": st.integers(0, 10_000) | st.lists(st.integers(0, 300), max_size=3) | anything,
        "steps": numbers,
        "seed": st.integers(-1, 2**64) | anything,
        "styles": st.lists(style, max_size=3) | anything,
        "style_layers": layers,
        "style_weight": numbers,
        "content": st.fixed_dictionaries({}, optional={"image": images, "weight": numbers, "layers": layers})
        | anything,
        "optimizer": st.sampled_from(["lbfgs", "adam", "sgd"]) | anything,
        "learning_rate": numbers | st.none(),
        "init": st.sampled_from(["noise", "content", "image", "style_mean", "zeros"]) | anything,
        "init_image": images,
        "preserve_colour": st.sampled_from(["none", "luminance", "histogram", "sepia"]) | anything,
        "tv_weight": numbers,
        "pooling": st.sampled_from(["max", "avg", "min"]) | anything,
        "output": st.sampled_from(["out/x.png", "out/x.gif", "x.jpg", "images", "notes.txt/x.png"]) | anything,
        "weights": anything,
        "stpes": anything,
    },
)


def check(load, source: str) -> None:
    try:
        recipe = load()
    except TexsynthError as error:
        assert error.problems and str(error) == error.problems[0]
        for problem in error.problems:
            assert problem.startswith(f"{source}: ") and "\n" not in problem, problem
        return
    assert isinstance(recipe, Recipe)
    # An accepted recipe is really valid: its effective form loads again to the same recipe.
    assert parse_recipe(recipe.to_dict()).to_dict() == recipe.to_dict()
    assert all(math.isfinite(style.weight) and style.weight > 0 for style in recipe.styles)


@FUZZ
@given(data=recipe_data)
@example(data={"styles": [{"image": "images/brick.jpg"}]})
def test_random_recipe_data_gives_a_recipe_or_a_texsynth_error(folder, data):
    check(lambda: parse_recipe(data, source="fuzz.yaml", base_dir=folder), "fuzz.yaml")


@FUZZ
@given(data=anything)
def test_random_data_of_any_shape_gives_a_recipe_or_a_texsynth_error(folder, data):
    check(lambda: parse_recipe(data, source="fuzz.yaml", base_dir=folder), "fuzz.yaml")


def write_and_load(folder: Path, text: str) -> None:
    path = folder / "fuzz.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    check(lambda: load_recipe(path), str(path))


@FUZZ
@given(text=st.text(max_size=200))
@example(text="styles: &a [*a]")
@example(text="!!python/object/apply:os.system ['true']")
@example(text="? [a, b]\n: 1\n")
@example(text="steps: 1\nsteps: 2\n")
@example(text="<<: {size: 32}\nsize: 48\nstyles: [{image: images/brick.jpg}]\n")
@example(text="null: 1\n1: 2\ntrue: 3\n")
@example(text="a: &a [*a, *a]\nsize: *a\n")
def test_random_text_as_a_recipe_file_gives_a_recipe_or_a_texsynth_error(folder, text):
    write_and_load(folder, text)


GOOD = yaml.safe_dump(
    {
        "version": 1,
        "size": 64,
        "steps": 5,
        "styles": [{"image": "images/brick.jpg", "weight": 0.5, "scale": 2.0}, {"image": "images/grass.jpg"}],
        "style_layers": {"relu1_1": 1.0, "relu3_1": 0.5},
        "content": {"image": "images/chelsea.jpg"},
        "preserve_colour": "luminance",
        "output": "out/x.png",
    },
    sort_keys=False,
)


@FUZZ
@given(cuts=st.lists(st.tuples(st.integers(0, len(GOOD)), st.integers(0, 8), st.text(max_size=6)), max_size=4))
def test_a_damaged_recipe_gives_a_recipe_or_a_texsynth_error(folder, cuts):
    text = GOOD
    for start, length, insert in cuts:
        text = text[:start] + insert + text[start + length :]
    write_and_load(folder, text)


@FUZZ
@given(data=recipe_data)
def test_random_recipe_data_written_as_yaml_gives_a_recipe_or_a_texsynth_error(folder, data):
    write_and_load(folder, yaml.safe_dump(data, allow_unicode=True))
