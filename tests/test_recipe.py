"""Parsing recipes: defaults, path resolution, overrides, and messages that name file, field and line."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from texsynth.errors import TexsynthError
from texsynth.recipe import (
    DEFAULT_STYLE_LAYERS,
    RECIPE_VERSION,
    Init,
    Optimizer,
    Pooling,
    load_recipe,
    parse_recipe,
)


def problems_of(path: Path, **overrides) -> list[str]:
    with pytest.raises(TexsynthError) as caught:
        load_recipe(path, overrides=overrides)
    return caught.value.problems


def test_defaults_are_filled_in(write_recipe, images):
    recipe = load_recipe(write_recipe(text="styles: [{image: images/brick.jpg}]\n"))
    assert recipe.version == RECIPE_VERSION
    assert recipe.size == 256 and recipe.steps == 300 and recipe.seed == 0
    assert dict(recipe.style_layers) == DEFAULT_STYLE_LAYERS
    assert recipe.optimizer is Optimizer.LBFGS and recipe.pooling is Pooling.MAX
    assert recipe.effective_init is Init.NOISE
    assert recipe.content is None and recipe.styles[0].weight == 1.0


def test_paths_resolve_relative_to_the_recipe_file(write_recipe, images, tmp_path, monkeypatch):
    monkeypatch.chdir("/")
    recipe = load_recipe(write_recipe(output="renders/x.png"))
    assert recipe.styles[0].image == images / "brick.jpg"
    assert recipe.output == tmp_path / "renders" / "x.png"


def test_output_defaults_to_out_folder_named_after_the_recipe(write_recipe, tmp_path):
    recipe = load_recipe(write_recipe("wall.yaml"))
    assert recipe.output == tmp_path / "out" / "wall.png"


def test_overrides_replace_recipe_fields(write_recipe, tmp_path):
    recipe = load_recipe(write_recipe(), overrides={"size": [96, 64], "steps": 7, "seed": 3, "output": None})
    assert recipe.size == (96, 64) and recipe.steps == 7 and recipe.seed == 3
    assert recipe.output_size() == (96, 64)


def test_a_long_side_follows_the_content_aspect(write_recipe):
    recipe = load_recipe(write_recipe(size=300, content={"image": "images/chelsea.jpg"}))
    assert recipe.output_size((451, 300)) == (300, 200)
    assert recipe.effective_init is Init.CONTENT


def test_effective_recipe_round_trips_through_yaml(write_recipe, tmp_path):
    recipe = load_recipe(write_recipe(content={"image": "images/chelsea.jpg"}, size=[80, 64]))
    again = tmp_path / "again.yaml"
    again.write_text(recipe.to_yaml())
    assert load_recipe(again).to_dict() == recipe.to_dict()


def test_python_api_accepts_plain_data(images):
    recipe = parse_recipe({"styles": [{"image": str(images / "brick.jpg"), "weight": 2}]})
    assert recipe.styles[0].weight == 2.0


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"steps": 0}, "steps: must be >= 1, got 0"),
        ({"steps": "many"}, "steps: must be a whole number, got 'many'"),
        ({"steps": 2.5}, "steps: must be a whole number, got 2.5"),
        ({"seed": True}, "seed: must be a whole number, got True"),
        ({"styles": [{"image": "images/brick.jpg", "weight": -1}]}, "styles[0].weight: must be > 0, got -1"),
        ({"styles": [{"image": "images/brick.jpg", "weight": float("nan")}]}, "styles[0].weight: must be a finite"),
        ({"styles": []}, "styles: must have at least one entry"),
        ({"style_layers": {"relu4_1": 0}}, "style_layers.relu4_1: must be > 0, got 0"),
        ({"style_layers": {"relu6_1": 1}}, "style_layers: unknown VGG19 layer 'relu6_1'"),
        ({"optimizer": "sgd"}, "optimizer: must be one of 'lbfgs' or 'adam', got 'sgd'"),
        ({"pooling": "min"}, "pooling: must be one of 'max' or 'avg', got 'min'"),
        ({"init": "zeros"}, "init: must be one of 'noise', 'content', 'image' or 'style_mean', got 'zeros'"),
        ({"init": "image"}, "init: 'image' needs init_image"),
        ({"init": "noise", "init_image": "images/brick.jpg"}, "init_image: is only used with init: image"),
        ({"init_image": "images/missing.jpg"}, "init_image: no such file"),
        ({"preserve_colour": "luminance"}, "preserve_colour: 'luminance' keeps a content image's colours"),
        ({"preserve_colour": "sepia"}, "preserve_colour: must be one of 'none', 'luminance' or 'histogram'"),
        ({"preserve_color": "luminance"}, "preserve_color: unknown field (did you mean 'preserve_colour'?)"),
        ({"init": "content"}, "init: 'content' needs a content image"),
        ({"size": 8}, "size: 8 px is out of range"),
        ({"size": 100000}, "size: 100000 px is out of range"),
        ({"size": [64, 64, 3]}, "size: must be a long side in px or [width, height]"),
        ({"size": 20}, "size: 20 px is too small for relu5_1"),
        ({"tv_weight": -0.1}, "tv_weight: must be >= 0"),
        ({"colour": "red"}, "colour: unknown field"),
        ({"stpes": 5}, "stpes: unknown field (did you mean 'steps'?)"),
        ({"output": "out/x.gif"}, "output: unsupported image type '.gif'"),
        ({"version": 99}, "version: this recipe is format version 99"),
        ({"styles": [{"image": "images/missing.jpg"}]}, "styles[0].image: no such file"),
        ({"content": {"image": "images/brick.jpg", "layers": {}}}, "content.layers: must name at least one layer"),
    ],
)
def test_bad_fields_are_named(write_recipe, fields, expected):
    path = write_recipe(**fields)
    problems = problems_of(path)
    assert problems[0].startswith(f"{path}: "), problems
    assert expected in problems[0], problems


def test_line_numbers_point_at_the_bad_value(write_recipe):
    path = write_recipe(text="version: 1\nstyles:\n  - image: images/brick.jpg\n    weight: 0\n")
    assert problems_of(path) == [f"{path}: styles[0].weight: must be > 0, got 0 (line 4)"]


def test_every_problem_is_listed(write_recipe):
    path = write_recipe(steps=0, pooling="min", styles=[{"image": "images/brick.jpg", "weight": 0}])
    assert len(problems_of(path)) == 3


def test_yaml_syntax_error_gives_the_line(write_recipe):
    path = write_recipe(text="version: 1\nstyles:\n  - image: [unclosed\n")
    message = problems_of(path)[0]
    assert message.startswith(f"{path}: line ") and "invalid YAML" in message


def test_duplicate_keys_are_refused(write_recipe):
    path = write_recipe(text="steps: 5\nsteps: 6\nstyles: [{image: images/brick.jpg}]\n")
    assert "duplicate field 'steps'" in problems_of(path)[0]


@pytest.mark.parametrize(
    "text",
    [
        "steps: !!python/object/apply:os.system ['true']\nstyles: []\n",  # a tag that would run code
        "styles: &loop [*loop]\n",  # an alias inside itself
        "? [a, b]\n: 1\n",  # a list as a field name
    ],
)
def test_unsafe_or_impossible_yaml_is_refused(write_recipe, text):
    path = write_recipe(text=text)
    assert "invalid YAML" in problems_of(path)[0]


def test_a_recipe_must_be_a_mapping(write_recipe):
    path = write_recipe(text="- just\n- a list\n")
    assert problems_of(path) == [f"{path}: a recipe must be a mapping of fields, got a list"]


def test_overrides_are_labelled_as_coming_from_the_command_line(write_recipe):
    assert "steps (from the command line): must be >= 1" in problems_of(write_recipe(), steps=0)[0]


def test_a_file_that_is_not_an_image(write_recipe, images):
    (images / "notes.jpg").write_text("hello")
    path = write_recipe(styles=[{"image": "images/notes.jpg"}])
    assert "styles[0].image: not an image file" in problems_of(path)[0]


def test_recipes_shipped_with_texsynth_are_valid():
    shipped = sorted((Path(__file__).parents[1] / "recipes").glob("*.yaml"))
    assert len(shipped) >= 3
    for path in shipped:
        recipe = load_recipe(path)
        assert yaml.safe_load(recipe.to_yaml())["version"] == RECIPE_VERSION


def test_a_missing_image_is_listed_with_the_other_problems_and_its_line(write_recipe):
    path = write_recipe(text="steps: 0\nstyles:\n  - image: images/brick.jpg\n  - image: images/gone.jpg\n")
    problems = problems_of(path)
    assert problems[0] == f"{path}: steps: must be >= 1, got 0 (line 1)"
    assert problems[1].startswith(f"{path}: styles[1].image: no such file: ") and problems[1].endswith("(line 4)")


def test_init_image_implies_init_image_and_resolves_against_the_recipe(write_recipe, images):
    recipe = load_recipe(write_recipe(init_image="images/gravel.jpg"))
    assert recipe.effective_init is Init.IMAGE and recipe.init_image == images / "gravel.jpg"
    assert recipe.to_dict()["init"] == "image"


def test_input_images_lists_every_image_the_recipe_reads(write_recipe, images):
    recipe = load_recipe(
        write_recipe(
            styles=[{"image": "images/brick.jpg"}, {"image": "images/grass.jpg"}],
            content={"image": "images/chelsea.jpg"},
            init_image="images/gravel.jpg",
        )
    )
    assert recipe.input_images() == [
        (("styles", 0, "image"), images / "brick.jpg"),
        (("styles", 1, "image"), images / "grass.jpg"),
        (("content", "image"), images / "chelsea.jpg"),
        (("init_image",), images / "gravel.jpg"),
    ]


def test_dotted_overrides_reach_into_content_and_every_style(write_recipe):
    two = [{"image": "images/brick.jpg", "scale": 2.0}, {"image": "images/grass.jpg"}]
    path = write_recipe(styles=two, content={"image": "images/chelsea.jpg", "weight": 3.0})
    recipe = load_recipe(path, overrides={"styles.scale": 0.5, "content.weight": 0.25})
    assert [style.scale for style in recipe.styles] == [0.5, 0.5]
    assert recipe.content.weight == 0.25 and recipe.content.image.name == "chelsea.jpg"
    recipe = load_recipe(path, overrides={"styles.scale": [0.5, 4.0]})
    assert [style.scale for style in recipe.styles] == [0.5, 4.0]
    assert (
        "styles.scale (from the command line): 3 values for 2 styles"
        in problems_of(path, **{"styles.scale": [1.0, 1.0, 1.0]})[0]
    )
    assert (
        "styles[1].scale (from the command line): must be > 0" in problems_of(path, **{"styles.scale": [1.0, 0.0]})[0]
    )


def test_a_nested_override_needs_its_section(write_recipe):
    message = problems_of(write_recipe(), **{"content.weight": 2.0})[0]
    assert "content.weight (from the command line): the recipe has no content" in message


def test_yaml_alias_bombs_are_refused_before_they_expand(write_recipe):
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    path = write_recipe(text="\n".join(lines) + "\nstyles: [{image: images/brick.jpg}]\n")
    assert "expands to more than" in problems_of(path)[0]


def test_a_huge_file_is_not_read_as_a_recipe(write_recipe):
    path = write_recipe(text="# padding\n" * 200_000)
    assert "larger than 1000 kB" in problems_of(path)[0]
