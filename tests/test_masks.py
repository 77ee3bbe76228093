"""Style masks: each style applies where its mask is white, checked in the maths, the image, and the CLI."""

from __future__ import annotations

import zipfile

import numpy as np
import torch
import yaml
from PIL import Image
from typer.testing import CliRunner

from texsynth import parse_recipe, synthesize
from texsynth.cli import app
from texsynth.losses import gram_matrix, masked_gram_matrix

runner = CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1"})


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def half_mask(path, side: str, size=(64, 64)):
    """A mask image, white on the ``side`` ("left" or "right") half, black on the other."""
    width, height = size
    array = np.zeros((height, width), dtype=np.uint8)
    if side == "left":
        array[:, : width // 2] = 255
    else:
        array[:, width // 2 :] = 255
    Image.fromarray(array).save(path)
    return path


def test_a_white_mask_gives_the_plain_gram_and_a_half_mask_the_gram_of_that_half():
    features = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(masked_gram_matrix(features, torch.ones(1, 1, 32, 32)), gram_matrix(features), atol=1e-6)
    left = torch.zeros(1, 1, 32, 32)
    left[..., :16] = 1  # at 4× the feature resolution: whole feature cells
    assert torch.allclose(masked_gram_matrix(features, left), gram_matrix(features[..., :4]), atol=1e-6)


def blueness(image: torch.Tensor) -> float:
    """Mean blue minus red: Starry Night is blue, the brick wall grey."""
    return float((image[:, 2] - image[:, 0]).mean())


def test_each_style_lands_in_its_own_half(images, tmp_path):
    styles = [
        {"image": str(images / "brick.jpg"), "mask": str(half_mask(tmp_path / "left.png", "left"))},
        {"image": str(images / "starry_night.jpg"), "mask": str(half_mask(tmp_path / "right.png", "right"))},
    ]
    recipe = {"size": 64, "steps": 40, "styles": styles}
    masked = synthesize(parse_recipe(recipe)).image
    plain = synthesize(parse_recipe({**recipe, "styles": [{"image": s["image"]} for s in styles]})).image
    left, right = blueness(masked[..., :32]), blueness(masked[..., 32:])
    plain_gap = abs(blueness(plain[..., 32:]) - blueness(plain[..., :32]))
    # The brick half stays grey, the Starry Night half turns blue; the unmasked
    # blend of the same two styles mixes them anywhere (its halves differ by chance).
    assert abs(left) < 0.05 and right > 0.1, (left, right)
    assert right - left > 2 * plain_gap, (left, right, plain_gap)


def write(tmp_path, **fields):
    data = {"version": 1, "size": 64, "steps": 2, "styles": [{"image": "images/brick.jpg"}], **fields}
    path = tmp_path / "masked.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_masks_need_the_gram_loss(images, tmp_path):
    half_mask(tmp_path / "left.png", "left")
    styles = [{"image": "images/brick.jpg", "mask": "left.png"}]
    result = run("recipe", write(tmp_path, styles=styles, style_loss="sliced_wasserstein"), "-o", tmp_path / "o.png")
    assert result.exit_code == 2
    assert (
        "masked.yaml: styles[0].mask: masks work with style_loss: gram (or auto), not sliced_wasserstein"
        in result.stderr
    )
    assert not (tmp_path / "o.png").exists()
    # auto picks Gram for a masked texture
    effective = run("recipe", write(tmp_path, styles=styles), "--dry-run")
    assert effective.exit_code == 0 and "style_loss: gram\n" in effective.stdout


def test_a_missing_or_black_mask_is_one_line_and_writes_nothing(images, tmp_path):
    missing = run(
        "recipe", write(tmp_path, styles=[{"image": "images/brick.jpg", "mask": "nope.png"}]), "-o", tmp_path / "o.png"
    )
    assert missing.exit_code == 2 and "styles[0].mask:" in missing.stderr and "nope.png" in missing.stderr
    Image.new("L", (16, 16), 0).save(tmp_path / "black.png")
    black = run(
        "recipe", write(tmp_path, styles=[{"image": "images/brick.jpg", "mask": "black.png"}]), "-o", tmp_path / "o.png"
    )
    assert black.exit_code == 2 and "styles[0].mask:" in black.stderr and "black everywhere" in black.stderr
    assert len(black.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o.png").exists()


def test_a_bundle_carries_the_masks(images, tmp_path):
    half_mask(tmp_path / "left.png", "left")
    recipe = write(tmp_path, styles=[{"image": "images/brick.jpg", "mask": "left.png"}])
    result = run("pack", recipe, "-o", tmp_path / "m.texsynth.zip")
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(tmp_path / "m.texsynth.zip") as archive:
        assert "images/left.png" in archive.namelist()
        bundled = yaml.safe_load(archive.read("recipe.yaml"))
    assert bundled["styles"][0]["mask"] == "images/left.png"


def test_style_mask_on_the_command_line_sets_one_per_style(images, tmp_path, monkeypatch):
    half_mask(tmp_path / "left.png", "left")
    styles = [{"image": "images/brick.jpg"}, {"image": "images/grass.jpg"}]
    monkeypatch.chdir(tmp_path)
    result = run("recipe", write(tmp_path, styles=styles), "--style-mask", "left.png,none", "--dry-run")
    assert result.exit_code == 0, result.output
    effective = yaml.safe_load(result.stdout)
    assert effective["styles"][0]["mask"] == str((tmp_path / "left.png").resolve())
    assert "mask" not in effective["styles"][1]
