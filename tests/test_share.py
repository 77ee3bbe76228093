"""Sharing recipes: validate without running, the JSON Schema for editors, and commented starter recipes."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from texsynth.cli import app
from texsynth.recipe import Content, Recipe, Style, load_recipe
from texsynth.schema import DESCRIPTIONS, recipe_schema

runner = CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1"})
SHIPPED = sorted((Path(__file__).parents[1] / "recipes").glob("*.yaml"))


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


# ------------------------------------------------------------------ validate


def test_validate_lists_every_problem_in_every_file_with_lines_and_exits_2(write_recipe, tmp_path):
    good = write_recipe("good.yaml")
    bad = write_recipe("bad.yaml", text="steps: 0\npooling: min\nstyles:\n  - image: images/gone.jpg\n")
    worse = write_recipe("worse.yaml", text="styles: [oops\n")
    before = sorted(tmp_path.rglob("*"))

    result = run("validate", good, bad, worse)

    assert result.exit_code == 2
    assert result.stdout.strip() == f"ok: {good}"
    errors = result.stderr.strip().splitlines()
    assert len(errors) == 4, errors
    assert f"error: {bad}: steps: must be >= 1, got 0 (line 1)" in errors
    assert f"error: {bad}: pooling: must be one of 'max' or 'avg', got 'min' (line 2)" in errors
    missing = [e for e in errors if "styles[0].image" in e]
    assert missing[0].startswith(f"error: {bad}: styles[0].image: no such file") and missing[0].endswith("(line 4)")
    assert errors[3].startswith(f"error: {worse}: line 2: invalid YAML")
    assert sorted(tmp_path.rglob("*")) == before


def test_validate_passes_the_shipped_recipes():
    result = run("validate", *SHIPPED)
    assert result.exit_code == 0, result.output
    assert result.stdout.count("ok: ") == len(SHIPPED)


def test_validate_checks_bundles_and_output_images_too(write_recipe, tmp_path, images):
    recipe = write_recipe(size=32, steps=1, output="x.png")
    assert run("pack", recipe, "-o", tmp_path / "x.texsynth.zip").exit_code == 0
    assert run("recipe", recipe, "-q", "--no-trace").exit_code == 0
    result = run("validate", tmp_path / "x.texsynth.zip", tmp_path / "x.png", images / "brick.jpg")
    assert result.exit_code == 2
    assert result.stdout.splitlines() == [f"ok: {tmp_path / 'x.texsynth.zip'}", f"ok: {tmp_path / 'x.png'}"]
    assert "no texsynth recipe embedded" in result.stderr


# ------------------------------------------------------------------ schema


@pytest.fixture(scope="module")
def schema() -> dict:
    result = run("schema")
    assert result.exit_code == 0
    return json.loads(result.stdout)


def test_schema_is_valid_draft_07_and_accepts_the_shipped_recipes(schema):
    jsonschema.Draft7Validator.check_schema(schema)
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    for path in SHIPPED:
        jsonschema.validate(yaml.safe_load(path.read_text()), schema, cls=jsonschema.Draft7Validator)


def test_schema_accepts_every_effective_recipe(write_recipe, schema):
    recipe = load_recipe(
        write_recipe(
            content={"image": "images/chelsea.jpg"},
            size=[64, 48],
            preserve_colour="luminance",
            init_image="images/gravel.jpg",
        )
    )
    jsonschema.validate(recipe.to_dict(), schema, cls=jsonschema.Draft7Validator)


@pytest.mark.parametrize(
    "change",
    [
        {"colour": "red"},
        {"steps": 0},
        {"size": 8},
        {"size": [64, 64, 3]},
        {"pooling": "median"},
        {"preserve_colour": "sepia"},
        {"init": "zeros"},
        {"style_layers": {"relu9_1": 1}},
        {"styles": [{"image": "a.jpg", "weight": 0}]},
        {"styles": [{"image": "a.jpg", "wieght": 1}]},
        {"content": {"image": "c.jpg", "layers": {"conv9_1": 1}}},
        {"version": 2},
    ],
)
def test_schema_rejects_what_the_loader_rejects(schema, change):
    data = {"version": 1, "styles": [{"image": "a.jpg"}], **change}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, schema, cls=jsonschema.Draft7Validator)


def test_every_field_has_a_description_for_editors(schema):
    fields = {
        *Recipe.model_fields,
        *(f"styles.{f}" for f in Style.model_fields),
        *(f"content.{f}" for f in Content.model_fields),
    }
    assert fields == set(DESCRIPTIONS)
    assert all(field.get("description") for field in schema["properties"].values())
    assert all(field.get("description") for field in schema["definitions"]["Style"]["properties"].values())


def test_schema_can_be_written_to_a_file(tmp_path):
    assert run("schema", "-o", tmp_path / "texsynth.schema.json").exit_code == 0
    assert json.loads((tmp_path / "texsynth.schema.json").read_text()) == recipe_schema()


# ------------------------------------------------------------------ new


def test_new_writes_a_commented_recipe_that_loads(tmp_path, images, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run(
        "new",
        "--style",
        "images/starry_night.jpg:0.7",
        "--style",
        "images/the_scream.jpg:0.3",
        "--content",
        "images/chelsea.jpg",
        "-o",
        "mine/blend.yaml",
    )
    assert result.exit_code == 0, result.output
    text = (tmp_path / "mine" / "blend.yaml").read_text()
    assert "image: ../images/starry_night.jpg" in text and "# none | luminance | histogram" in text
    assert text.count("#") > 10, "the starter explains its fields"
    recipe = load_recipe(tmp_path / "mine" / "blend.yaml")
    assert [(s.image, s.weight) for s in recipe.styles] == [
        (images / "starry_night.jpg", 0.7),
        (images / "the_scream.jpg", 0.3),
    ]
    assert recipe.content.image == images / "chelsea.jpg"
    assert recipe.output == tmp_path / "mine" / "out" / "blend.png"
    assert recipe.to_dict() == load_recipe(tmp_path / "mine" / "blend.yaml").to_dict()


def test_new_without_content_writes_a_texture_recipe(tmp_path, images):
    assert run("new", "--style", images / "brick.jpg", "-o", tmp_path / "t.yaml").exit_code == 0
    recipe = load_recipe(tmp_path / "t.yaml")
    assert (
        recipe.content is None
        and recipe.styles[0].weight == 1.0
        and "content:" not in (tmp_path / "t.yaml").read_text()
    )


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--style", "images/brick.jpg:0"), "--style: weight must be a number > 0, got '0'"),
        (("--style", "images/missing.jpg"), "--style: no such file"),
        (("--style", "images/brick.jpg", "--content", "images/nope.jpg"), "--content: no such file"),
        (("--style", "images/brick.jpg", "-o", "x.txt"), "x.txt: output: a recipe file must end in .yaml"),
        (("--style", "images/brick.jpg", "-o", "taken.yaml"), "taken.yaml: already exists; pass --force"),
    ],
)
def test_new_refuses_bad_input_in_one_line(args, expected, tmp_path, images, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken.yaml").write_text("precious")
    result = run("new", *args)
    assert result.exit_code == 2, result.output
    assert len(result.stderr.strip().splitlines()) == 1 and expected in result.stderr, result.stderr
    assert (tmp_path / "taken.yaml").read_text() == "precious" and not (tmp_path / "recipe.yaml").exists()


def test_new_force_replaces_a_file(tmp_path, images, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken.yaml").write_text("old")
    assert run("new", "--style", "images/brick.jpg", "-o", "taken.yaml", "--force").exit_code == 0
    assert load_recipe(tmp_path / "taken.yaml").styles[0].image == images / "brick.jpg"


def test_help_lists_the_sharing_commands():
    result = run("--help")
    for command in ("recipe", "validate", "schema", "new", "pack", "show"):
        assert f" {command} " in result.stdout, command
