"""Feed-forward style transfer: a network trained on photos stylizes a photo it never saw, at its own size.

Networks are trained at 32 px for a few dozen iterations on the three photos in
tests/data/photos/train; the held-out photo judges them.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from unittest import mock

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from texsynth import parse_recipe, synthesize
from texsynth.cli import app
from texsynth.errors import TexsynthError
from texsynth.fast import TrainingOptions, load_model, train
from texsynth.fast.apply import stylize
from texsynth.io import load_image, read_metadata
from texsynth.metrics import Measure

runner = CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1"})
PHOTOS = Path(__file__).resolve().parent / "data" / "photos"
HELD_OUT = PHOTOS / "held_out" / "squirrel_cls.jpg"


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def transfer_recipe(folder: Path, styles=(("starry_night.jpg", 1.0),), **fields):
    from conftest import IMAGES

    data = {
        "size": 64,
        "seed": 1,
        "styles": [{"image": str(IMAGES / name), "weight": weight} for name, weight in styles],
        "content": {"image": str(IMAGES / "chelsea.jpg")},
        **fields,
    }
    path = folder / "transfer.yaml"
    path.write_text(json.dumps(data))
    return path, parse_recipe(data)


BRIEF = TrainingOptions(iterations=40, batch_size=2, size=32, checkpoint_every=40)


@pytest.fixture(scope="module")
def transfer_model(tmp_path_factory):
    folder = tmp_path_factory.mktemp("transfer")
    _, recipe = transfer_recipe(folder)
    trained = train(recipe, output=folder / "starry.safetensors", options=BRIEF, content_dir=PHOTOS / "train")
    return trained


@pytest.fixture(scope="module")
def measure():
    return Measure()


def test_training_lowers_the_loss_and_records_its_photos(transfer_model):
    history = transfer_model.model.training["history"]
    totals = [entry["style"] + entry["content"] for entry in history]
    assert len(totals) == 40 and sum(totals[-5:]) < 0.7 * sum(totals[:5]), totals
    assert transfer_model.model.training["photos"] == {"folder": str(PHOTOS / "train"), "count": 3, "skipped": 0}
    assert transfer_model.model.kind == "transfer"


def test_a_held_out_photo_takes_the_style_and_keeps_more_content_than_a_texture(transfer_model, measure):
    from conftest import IMAGES

    photo = load_image(HELD_OUT, (64, 52))
    stylized = stylize(transfer_model.model, photo)
    grams = measure.grams([load_image(IMAGES / "starry_night.jpg", (64, 51))])
    assert measure.style_distance(stylized, grams) < measure.style_distance(photo, grams)
    texture = synthesize(
        parse_recipe({"size": [64, 52], "steps": 20, "styles": [{"image": str(IMAGES / "starry_night.jpg")}]})
    ).image
    assert measure.content_distance(stylized, photo) < measure.content_distance(texture, photo)


def test_apply_keeps_odd_sizes_exactly_and_gives_identical_bytes(transfer_model, tmp_path):
    odd = tmp_path / "odd.png"
    Image.open(HELD_OUT).convert("RGB").resize((67, 45)).save(odd)
    for name in ("a.png", "b.png"):
        result = run("apply", transfer_model.path, odd, "-o", tmp_path / name, "-q")
        assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "a.png").size == (67, 45)
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    meta = read_metadata(tmp_path / "a.png")
    assert meta["made_by"] == "apply" and meta["model"]["sha256"] == transfer_model.model.sha256
    assert meta["input"]["sha256"] == __import__("hashlib").sha256(odd.read_bytes()).hexdigest()


def test_grey_rgba_and_rotated_photos_come_out_right(transfer_model, tmp_path):
    source = Image.open(HELD_OUT).convert("RGB").resize((64, 48))
    source.convert("L").save(tmp_path / "grey.png")
    rgba = source.convert("RGBA")
    rgba.putalpha(Image.new("L", rgba.size, 0).point(lambda _: 128))
    rgba.save(tmp_path / "rgba.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view": a portrait photo stored sideways
    source.save(tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)
    result = run("apply", transfer_model.path, *(tmp_path / n for n in ("grey.png", "rgba.png", "rotated.jpg")),
                 "--out", tmp_path / "out", "-q")  # fmt: skip
    assert result.exit_code == 0, result.output
    grey, rgba_out, rotated = (Image.open(tmp_path / "out" / n) for n in ("grey.png", "rgba.png", "rotated.png"))
    assert grey.mode == "RGB" and grey.size == (64, 48)
    assert rgba_out.mode == "RGBA" and rgba_out.getchannel("A").getextrema() == (128, 128)
    assert rotated.size == (48, 64), "EXIF orientation is honoured"


def test_tiles_give_the_whole_photos_result_without_a_seam(transfer_model):
    photo = load_image(HELD_OUT, (128, 102))
    whole = stylize(transfer_model.model, photo)
    tiled = stylize(transfer_model.model, photo, tile=64)
    assert tiled.shape == whole.shape
    # Shared normalization statistics keep tiles in one tone; feathered overlaps hide the joins. Tiling
    # changes the result by under a third of what stylizing changes the photo (0.18 measured, with each
    # tile normalized by itself 0.42), and by under 60% of what per-tile statistics would change it.
    change = (whole - photo).abs().mean()
    assert (tiled - whole).abs().mean() < 0.3 * change
    with mock.patch("texsynth.fast.apply._frozen_statistics", lambda *args: contextlib.nullcontext()):
        each_by_itself = stylize(transfer_model.model, photo, tile=64)
    assert (tiled - whole).abs().mean() < 0.6 * (each_by_itself - whole).abs().mean()
    column = tiled[..., :, 60:68].diff(dim=-1).abs().mean()  # around a join of the 64 px tiles
    assert column < 1.5 * tiled.diff(dim=-1).abs().mean()


def test_luminance_keeps_the_photos_colours(transfer_model, tmp_path):
    from texsynth.colour import rgb_to_yiq

    assert run("apply", transfer_model.path, HELD_OUT, "-o", tmp_path / "l.png", "--preserve-colour", "luminance",
               "-q").exit_code == 0  # fmt: skip
    kept = load_image(tmp_path / "l.png")
    photo = load_image(HELD_OUT)
    chroma = lambda image: rgb_to_yiq(image)[:, 1:]  # noqa: E731
    plain = stylize(transfer_model.model, photo)
    assert (chroma(kept) - chroma(photo)).abs().mean() < 0.5 * (chroma(plain) - chroma(photo)).abs().mean()


def test_an_untrained_network_takes_out_a_photos_colour_cast_and_a_photo_skip_keeps_it():
    from texsynth.fast import TransferNetwork

    photo = load_image(HELD_OUT, (64, 48))
    cast = photo * torch.tensor([0.5, 0.7, 0.4])[:, None, None] + torch.tensor([0.4, 0.1, 0.0])[:, None, None]
    blend = torch.tensor([[1.0]])
    recoloured, plain = TransferNetwork(styles=1), TransferNetwork(styles=1, skip="photo")
    with torch.no_grad():
        assert (recoloured(cast, blend) - recoloured(photo, blend)).abs().max() < 1e-3
        assert (plain(cast, blend) - plain(photo, blend)).abs().mean() > 0.1
        assert (plain(photo, blend) - photo).abs().max() < 1e-6  # the photo skip starts as the identity


def test_a_format_1_transfer_file_loads_as_the_photo_skip_it_was(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from texsynth.fast import FastModel, TransferNetwork, save_model

    torch.manual_seed(0)
    network = TransferNetwork(styles=1, widths=[4, 8, 8], blocks=1, edge_kernel=3, skip="photo")
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.1)
    save_model(tmp_path / "new.safetensors", FastModel(network=network, kind="transfer", styles=("s",), blend=(1.0,),
                                                       recipe={}))  # fmt: skip
    with safe_open(str(tmp_path / "new.safetensors"), "pt") as handle:
        meta = json.loads(handle.metadata()["texsynth.model"])
    del meta["architecture"]["skip"]
    meta["format_version"] = 1
    save_file(load_file(str(tmp_path / "new.safetensors")), str(tmp_path / "old.safetensors"),
              metadata={"texsynth.model": json.dumps(meta)})  # fmt: skip
    old = load_model(tmp_path / "old.safetensors")
    assert old.architecture()["skip"] == "photo"
    assert old.describe()["format_version"] == 1  # `texsynth show` says what the file is
    save_model(tmp_path / "rewritten.safetensors", old)
    rewritten = load_model(tmp_path / "rewritten.safetensors")
    assert rewritten.describe()["format_version"] == 2 and rewritten.architecture()["skip"] == "photo"
    photo = load_image(HELD_OUT, (36, 28))
    assert torch.equal(stylize(old, photo), stylize(load_model(tmp_path / "new.safetensors"), photo))


def test_resume_equals_an_uninterrupted_run(tmp_path):
    from test_fast import interrupt_at

    _, recipe = transfer_recipe(tmp_path)
    options = TrainingOptions(iterations=4, batch_size=1, size=32, checkpoint_every=10)
    whole = train(recipe, output=tmp_path / "whole.safetensors", options=options, content_dir=PHOTOS / "train")
    train(recipe, output=tmp_path / "parts.safetensors", options=options, content_dir=PHOTOS / "train",
          on_iteration=interrupt_at(2))  # fmt: skip
    resumed = train(recipe, output=tmp_path / "parts.safetensors", options=options, content_dir=PHOTOS / "train",
                    resume=True)  # fmt: skip
    first, second = whole.model.network.state_dict(), resumed.model.network.state_dict()
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_an_unreadable_file_among_the_photos_is_skipped_and_counted(tmp_path):
    folder = tmp_path / "photos"
    shutil.copytree(PHOTOS / "train", folder)
    (folder / "nested").mkdir()
    shutil.copy(HELD_OUT, folder / "nested" / "deep.JPG")
    (folder / "notes.jpg").write_text("not a photo")
    (folder / "readme.txt").write_text("ignored: not a photo suffix")
    _, recipe = transfer_recipe(tmp_path)
    options = TrainingOptions(iterations=1, batch_size=1, size=32)
    trained = train(recipe, output=tmp_path / "m.safetensors", options=options, content_dir=folder)
    assert trained.model.training["photos"]["count"] == 4 and trained.model.training["photos"]["skipped"] == 1


# ------------------------------------------------------------------ bad input


def one_line_exit_2(result, expected):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in result.output, result.stderr


def test_bad_content_folders_and_recipes_are_one_line_and_write_nothing(tmp_path):
    from conftest import IMAGES

    recipe, _ = transfer_recipe(tmp_path)
    texture = tmp_path / "texture.yaml"
    texture.write_text(json.dumps({"size": 64, "styles": [{"image": str(IMAGES / "brick.jpg")}]}))
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.jpg").write_text("no")
    model = tmp_path / "m.safetensors"
    cases = [
        ((recipe, "--content-dir", tmp_path / "nowhere"), "content_dir: no such folder"),
        ((recipe, "--content-dir", tmp_path / "empty"), "holds no readable photos (no .jpg, .png or .webp files)"),
        ((recipe, "--content-dir", tmp_path / "junk"), "holds no readable photos (1 unreadable files)"),
        ((texture, "--content-dir", PHOTOS / "train"), "content_dir: this is a texture recipe"),
        ((recipe,), "content: this recipe has a content image: train a transfer network with --content-dir"),
    ]
    for args, expected in cases:
        before = sorted(p.name for p in tmp_path.rglob("*"))
        one_line_exit_2(run("train", args[0], "-o", model, *args[1:]), expected)
        assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_a_model_of_the_other_kind_is_refused(transfer_model, tmp_path):
    from conftest import IMAGES

    texture = parse_recipe({"size": 64, "styles": [{"image": str(IMAGES / "brick.jpg")}]})
    texture_model = train(texture, output=tmp_path / "t.safetensors", options=TrainingOptions(iterations=1, size=32))
    one_line_exit_2(run("apply", texture_model.path, HELD_OUT, "-o", tmp_path / "x.png"), "a texture model stylizes no")
    one_line_exit_2(
        run("sample", transfer_model.path, "--count", "1", "--out", tmp_path / "s"),
        "a transfer model makes no textures",
    )
    assert not (tmp_path / "x.png").exists() and not (tmp_path / "s").exists()


def test_bad_apply_arguments_are_one_line(transfer_model, tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    shutil.copy(HELD_OUT, tmp_path / "a" / "p.jpg")
    shutil.copy(HELD_OUT, tmp_path / "b" / "p.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 not really")
    cases = [
        ((tmp_path / "a" / "p.jpg", tmp_path / "b" / "p.jpg", "--out", tmp_path / "o"), "would overwrite that of"),
        ((tmp_path / "broken.jpg", "-o", tmp_path / "x.png"), "broken.jpg"),
        ((HELD_OUT, "-o", tmp_path / "x.png", "--blend", "nobody:1"), "blend: the model has no style 'nobody'"),
        ((HELD_OUT, "-o", tmp_path / "x.png", "--tile", "8"), "--tile: must be at least 64"),
        ((HELD_OUT, "-o", tmp_path / "x.png", "--preserve-colour", "histogram"), "--preserve-colour: must be none or"),
        ((HELD_OUT,), "--out: give a folder"),
    ]
    for args, expected in cases:
        one_line_exit_2(run("apply", transfer_model.path, *args), expected)
    assert not (tmp_path / "o").exists() and not (tmp_path / "x.png").exists()


def test_a_stylized_photo_is_not_rerun_as_a_recipe(transfer_model, tmp_path):
    assert run("apply", transfer_model.path, HELD_OUT, "-o", tmp_path / "s.png", "-q").exit_code == 0
    one_line_exit_2(run("recipe", tmp_path / "s.png"), "made by texsynth apply from a trained model")
    shown = run("show", tmp_path / "s.png")
    assert shown.exit_code == 0 and "# made by texsynth apply" in shown.stdout
    with pytest.raises(TexsynthError):
        load_model(tmp_path / "s.png")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_transfer_network_trains_and_applies_on_cuda(tmp_path):
    _, recipe = transfer_recipe(tmp_path)
    options = TrainingOptions(iterations=20, batch_size=4, size=64, checkpoint_every=20)
    trained = train(recipe, output=tmp_path / "m.safetensors", options=options, content_dir=PHOTOS / "train",
                    device="cuda")  # fmt: skip
    photos = torch.cat([load_image(HELD_OUT, (64, 48))] * 3)
    on_gpu = stylize(trained.model, photos, device="cuda")
    on_cpu = stylize(load_model(trained.path), photos)
    assert on_gpu.shape == (3, 3, 48, 64) and (on_gpu - on_cpu).abs().mean() < 0.02


def test_an_output_that_is_one_of_the_photos_is_refused(transfer_model, tmp_path):
    photo = tmp_path / "p.png"
    Image.open(HELD_OUT).convert("RGB").save(photo)
    before = photo.read_bytes()
    one_line_exit_2(run("apply", transfer_model.path, photo, "-o", photo), "an input of this run")
    other = tmp_path / "out"
    other.mkdir()
    (other / "p.png").hardlink_to(photo)
    one_line_exit_2(run("apply", transfer_model.path, photo, "--out", other), "an input of this run")
    assert photo.read_bytes() == before
