"""Feed-forward texture generators: training lowers the loss, samples take on the style, blends sit between.

Models are trained at 32 px for a few dozen iterations on the real VGG19: enough
to see each behaviour, not to make good textures.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from texsynth import parse_recipe
from texsynth.cli import app
from texsynth.errors import TexsynthError
from texsynth.fast import TrainingOptions, load_model, sample, sample_images, train
from texsynth.fast.model_file import checkpoint_path
from texsynth.fast.networks import TextureGenerator
from texsynth.io import load_image, read_metadata
from texsynth.metrics import Measure, pixel_seam
from texsynth.tiles import tile_seed

runner = CliRunner(env={"COLUMNS": "120", "NO_COLOR": "1"})


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def recipe_of(images: Path, styles, **fields):
    data = {"size": 64, "steps": 5, "seed": 3, "styles": [{"image": str(images / n), "weight": w} for n, w in styles]}
    data.update(fields)
    return parse_recipe(data)


BRIEF = TrainingOptions(iterations=40, batch_size=2, size=32, checkpoint_every=20, learning_rate=0.005)


@pytest.fixture(scope="module")
def module_images(tmp_path_factory) -> Path:
    import shutil

    from conftest import IMAGES

    folder = tmp_path_factory.mktemp("images")
    for name in ("brick.jpg", "starry_night.jpg", "the_scream.jpg"):
        shutil.copy(IMAGES / name, folder / name)
    return folder


@pytest.fixture(scope="module")
def brick_model(module_images, tmp_path_factory):
    """A tileable brick generator after 40 iterations, and its recipe."""
    recipe = recipe_of(module_images, [("brick.jpg", 1.0)], tileable=True)
    trained = train(recipe, output=tmp_path_factory.mktemp("models") / "brick.safetensors", options=BRIEF)
    return trained, recipe


@pytest.fixture(scope="module")
def blend_model(module_images, tmp_path_factory):
    """A two-style generator (grey brick, blue Starry Night) after a short run on blends.

    The Gram loss alone trains three times faster a step; re-blending the
    sliced-Wasserstein term is tested in test_sliced.py.
    """
    recipe = recipe_of(module_images, [("brick.jpg", 0.5), ("starry_night.jpg", 0.5)], style_loss="gram")
    options = TrainingOptions(iterations=160, batch_size=2, size=32, checkpoint_every=160, learning_rate=0.005)
    trained = train(recipe, output=tmp_path_factory.mktemp("models") / "blend.safetensors", options=options)
    return trained, recipe


@pytest.fixture(scope="module")
def measure():
    return Measure()


def style_grams(measure, images, names, weights=None):
    return measure.grams([load_image(images / name, (64, 64)) for name in names], weights)


# ------------------------------------------------------------------ training


def test_training_lowers_the_loss(brick_model):
    trained, _ = brick_model
    history = [entry["style"] for entry in trained.model.training["history"]]
    assert len(history) == 40 and trained.iterations == 40 and not trained.interrupted
    assert sum(history[-5:]) / 5 < 0.6 * sum(history[:5]) / 5, history


def test_a_trained_generator_is_closer_to_its_style_than_an_untrained_one(brick_model, module_images, measure):
    trained, _ = brick_model
    grams = style_grams(measure, module_images, ["brick.jpg"])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)  # the same initial weights the training started from
        untrained = TextureGenerator(styles=1, padding="circular")
    before = sample(
        type(trained.model)(network=untrained, kind="texture", styles=("brick",), blend=(1.0,), recipe={}),
        count=2,
        width=64,
        height=64,
    )
    after = sample(trained.model, count=2, width=64, height=64)
    distance = [sum(measure.style_distance(x[i : i + 1], grams) for i in range(2)) for x in (before, after)]
    assert distance[1] < 0.7 * distance[0], distance


def interrupt_at(iteration: int):
    """An on_iteration callback that presses Ctrl-C after ``iteration``: the loop stops there, cleanly."""
    import os
    import signal

    def report(progress):
        if progress.iteration == iteration:
            os.kill(os.getpid(), signal.SIGINT)

    return report


def test_resume_equals_an_uninterrupted_run_bit_for_bit(module_images, tmp_path):
    recipe = recipe_of(module_images, [("brick.jpg", 1.0)], tileable=True)
    options = TrainingOptions(iterations=5, batch_size=2, size=32, checkpoint_every=10)
    whole = train(recipe, output=tmp_path / "whole.safetensors", options=options)
    stopped = train(recipe, output=tmp_path / "parts.safetensors", options=options, on_iteration=interrupt_at(2))
    assert stopped.interrupted and stopped.iterations == 2
    resumed = train(recipe, output=tmp_path / "parts.safetensors", options=options, resume=True)
    assert resumed.resumed_from == 2 and resumed.iterations == 5
    first, second = whole.model.network.state_dict(), resumed.model.network.state_dict()
    assert all(torch.equal(first[name], second[name]) for name in first)
    assert resumed.model.training["history"] == whole.model.training["history"]


def test_a_model_records_the_precision_it_trained_in_and_a_resume_in_another(module_images, tmp_path, monkeypatch):
    import texsynth.targets

    recipe = recipe_of(module_images, [("brick.jpg", 1.0)])
    options = TrainingOptions(iterations=2, batch_size=1, size=32, checkpoint_every=10)
    monkeypatch.setattr(texsynth.targets, "cpu_has_native_bf16", lambda: False)
    first = train(recipe, output=tmp_path / "m.safetensors", options=options, on_iteration=interrupt_at(1))
    assert first.model.training["precision"] == "fp32"
    monkeypatch.setattr(texsynth.targets, "cpu_has_native_bf16", lambda: True)  # the checkpoint moved machines
    resumed = train(recipe, output=tmp_path / "m.safetensors", options=options, resume=True)
    assert load_model(tmp_path / "m.safetensors").training["precision"] == "fp32, then bf16"
    assert resumed.iterations == 2


def test_a_nan_loss_stops_and_keeps_the_last_good_checkpoint(module_images, tmp_path, monkeypatch):
    recipe = recipe_of(module_images, [("brick.jpg", 1.0)])
    real = TextureGenerator.forward
    calls = {"n": 0}

    def poisoned(self, noise, blend):
        calls["n"] += 1
        image = real(self, noise, blend)
        return image * math.nan if calls["n"] == 3 else image

    monkeypatch.setattr(TextureGenerator, "forward", poisoned)
    output = tmp_path / "m.safetensors"
    with pytest.raises(TexsynthError, match="NaN or infinite at iteration 3.*last good checkpoint.*iteration 2"):
        train(recipe, output=output, options=TrainingOptions(iterations=5, batch_size=1, size=32, checkpoint_every=2))
    assert load_model(output).training["iterations"] == 2


# ------------------------------------------------------------------ sampling


def test_same_model_and_seed_give_identical_png_bytes_and_a_sample_is_the_same_in_any_batch(brick_model, tmp_path):
    trained, _ = brick_model
    for folder, count in (("a", 3), ("b", 3), ("c", 5)):
        assert (
            run("sample", trained.path, "--count", count, "--size", 64, "--out", tmp_path / folder, "-q").exit_code == 0
        )
    for index in range(3):
        name = f"tile-{index:05d}.png"
        assert (
            (tmp_path / "a" / name).read_bytes()
            == (tmp_path / "b" / name).read_bytes()
            == (tmp_path / "c" / name).read_bytes()
        )
    seeds = [tile_seed(0, i) for i in range(4)]
    together = sample_images(trained.model, seeds, width=64, height=64)
    alone = torch.cat([sample_images(trained.model, [s], width=64, height=64) for s in seeds])
    assert torch.equal(together, alone)
    assert not torch.equal(together[0], together[1]), "different seeds must give different samples"


def test_save_load_gives_the_same_samples(brick_model):
    trained, _ = brick_model
    loaded = load_model(trained.path)
    assert loaded.styles == ("brick",) and loaded.kind == "texture"
    assert torch.equal(
        sample(trained.model, count=2, width=64, height=64), sample(loaded, count=2, width=64, height=64)
    )


def rolled_sample(model, shift: int, width: int, height: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A sample, and the same sample from noise rolled by ``shift`` coarsest cells at every scale."""
    from texsynth.fast.data import sample_noise

    network = model.network
    noise = sample_noise(network.noise_shapes(width, height), [5])
    levels = len(noise)
    rolled = [z.roll((shift << level, shift << level), dims=(2, 3)) for level, z in enumerate(noise)]
    blend = torch.ones(1, 1)
    with torch.no_grad():
        return network(noise, blend), network(rolled, blend).roll((-shift << (levels - 1),) * 2, dims=(2, 3))


def mean_seam(images: torch.Tensor) -> float:
    return sum(pixel_seam(images[i : i + 1]) for i in range(images.shape[0])) / images.shape[0]


def test_tileable_samples_wrap_around_exactly_at_any_size(brick_model):
    trained, _ = brick_model
    for width, height in ((64, 64), (96, 48)):
        # On a torus, rolling the input rolls the output: no place is an edge.
        image, unrolled = rolled_sample(trained.model, 1, width, height)
        assert image.shape == (1, 3, height, width)
        assert torch.allclose(image, unrolled, atol=1e-5)
        # Briefly trained, nearest-neighbour upsampling still shows a 2-px grain; a plain generator measures 1.8-2.2.
        assert mean_seam(sample(trained.model, count=4, width=width, height=height)) < 1.3


def test_a_zero_padded_generator_would_have_edges(brick_model):
    # The control for the test above: the same weights with zero padding see where the edges are.
    trained, _ = brick_model
    plain = TextureGenerator(styles=1, padding="zeros")
    plain.load_state_dict(trained.model.network.state_dict())
    model = type(trained.model)(network=plain, kind="texture", styles=("brick",), blend=(1.0,), recipe={})
    image, unrolled = rolled_sample(model, 1, 64, 64)
    assert not torch.allclose(image, unrolled, atol=1e-3)
    assert mean_seam(sample(model, count=4, width=64, height=64)) > 1.3


def test_every_generator_pads_circularly_so_none_draws_a_frame(module_images, tmp_path):
    recipe = recipe_of(module_images, [("brick.jpg", 1.0)])  # not tileable
    trained = train(recipe, output=tmp_path / "plain.safetensors", options=TrainingOptions(iterations=2, size=32))
    assert trained.model.architecture()["padding"] == "circular"
    image, unrolled = rolled_sample(trained.model, 1, 64, 64)
    assert torch.allclose(image, unrolled, atol=1e-5)


def test_a_half_and_half_sample_sits_between_its_styles(blend_model, module_images, measure):
    trained, _ = blend_model
    target = {
        "blend": style_grams(measure, module_images, ["brick.jpg", "starry_night.jpg"], [0.5, 0.5]),
        "brick": style_grams(measure, module_images, ["brick.jpg"]),
        "starry": style_grams(measure, module_images, ["starry_night.jpg"]),
    }
    made = {
        "blend": sample(trained.model, count=2, width=64, height=64, blend={"brick": 1, "starry_night": 1}),
        "brick": sample(trained.model, count=2, width=64, height=64, blend={"brick": 1}),
        "starry": sample(trained.model, count=2, width=64, height=64, blend={"starry_night": 1}),
    }

    def distance(images, grams):
        return sum(measure.style_distance(images[i : i + 1], grams) for i in range(2))

    # Along the line from one style to the other, the 50/50 samples lie between the pure ones: further from
    # brick than the brick samples are and closer to it than the Starry Night samples are, and the same for
    # Starry Night. (Closest to the blend's own target of all three is a goal for a fully trained model,
    # measured by benchmarks/fast.py; a 160-iteration one meets it or not by the rounding of the machine.)
    to = {style: {name: distance(images, target[style]) for name, images in made.items()} for style in target}
    assert to["brick"]["brick"] < to["brick"]["blend"] < to["brick"]["starry"], to["brick"]
    assert to["starry"]["starry"] < to["starry"]["blend"] < to["starry"]["brick"], to["starry"]
    assert torch.equal(sample(trained.model, count=1, width=64, height=64), made["blend"][:1]), "default: the recipe's"


def test_sample_folders_carry_provenance_and_resume(brick_model, tmp_path):
    trained, _ = brick_model
    out = tmp_path / "tiles"
    assert run("sample", trained.path, "--count", 2, "--size", 64, "--out", out, "-q").exit_code == 0
    kept = (out / "tile-00000.png").stat().st_mtime_ns
    result = run("sample", trained.path, "--count", 3, "--size", 64, "--out", out)
    assert result.exit_code == 0, result.output
    assert "made 1 samples (64x64), 2 already there" in result.stderr
    assert (out / "tile-00000.png").stat().st_mtime_ns == kept
    meta = read_metadata(out / "tile-00002.png")
    assert meta["model"]["sha256"] == trained.model.sha256 and meta["blend"] == {"brick": 1.0}
    assert meta["seed"] == tile_seed(0, 2) and meta["model"]["recipe"]["tileable"] is True
    manifest = json.loads((out / "manifest.json").read_text())
    assert [e["index"] for e in manifest["tiles"]] == [0, 1, 2] and manifest["model"]["sha256"] == trained.model.sha256
    assert (out / "contact-sheet.png").exists()


def test_show_prints_the_model_and_a_runnable_recipe(brick_model, tmp_path):
    trained, recipe = brick_model
    result = run("show", trained.path)
    assert result.exit_code == 0, result.output
    assert "# a texture model (texture_generator)" in result.stdout and "styles: brick 1" in result.stdout
    from texsynth.recipe import Precision
    from texsynth.targets import resolved_precision

    ran_in = resolved_precision(Precision.AUTO, torch.device("cpu"))  # bf16 on a CPU with native bf16
    assert f"iterations on cpu ({ran_in}) in " in result.stdout

    # Saved beside the model, the printed recipe finds the same images: paths are relative to the model's folder.
    shown = trained.path.parent / "shown.yaml"
    shown.write_text(result.stdout)
    from texsynth import load_recipe

    assert load_recipe(shown).portable() == recipe.portable()
    assert json.loads(run("show", trained.path, "--json").stdout)["styles"] == ["brick"]


# ------------------------------------------------------------------ bad input


@pytest.fixture
def brick_recipe(module_images, tmp_path):
    path = tmp_path / "brick.yaml"
    path.write_text(json.dumps({"size": 64, "tileable": True, "styles": [{"image": str(module_images / "brick.jpg")}]}))
    return path


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line_exit_2(result, expected):
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0] and "Traceback" not in result.output, result.stderr


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--iterations", "0"), "--iterations: must be at least 1, got 0"),
        (("--batch-size", "0"), "--batch-size: must be at least 1, got 0"),
        (("--size", "-8"), "--size: must be at least 1, got -8"),
        (("--size", "40"), "size: 40 px: training samples need sides divisible by 16"),
        (("--learning-rate", "nan"), "--learning-rate: must be a number > 0"),
        (("--device", "tpu"), "--device: unknown device 'tpu'"),
    ],
)
def test_bad_training_options_are_one_line_and_write_nothing(brick_recipe, tmp_path, args, expected):
    before = files_under(tmp_path)
    one_line_exit_2(run("train", brick_recipe, "-o", tmp_path / "m.safetensors", *args), expected)
    assert files_under(tmp_path) == before


def test_bad_training_outputs_and_recipes_are_one_line(brick_recipe, module_images, tmp_path):
    (tmp_path / "file").write_text("x")
    before = files_under(tmp_path)
    one_line_exit_2(
        run("train", brick_recipe, "-o", tmp_path / "m.pt"), "output: a model file must end in .safetensors"
    )
    one_line_exit_2(
        run("train", brick_recipe, "-o", tmp_path / "file" / "m.safetensors"), "output: cannot create folder"
    )
    transfer = tmp_path / "transfer.yaml"
    transfer.write_text(
        json.dumps(
            {
                "styles": [{"image": str(module_images / "brick.jpg")}],
                "content": {"image": str(module_images / "brick.jpg")},
            }
        )
    )
    before = files_under(tmp_path)
    one_line_exit_2(
        run("train", transfer, "-o", tmp_path / "m.safetensors"), "content: this recipe has a content image"
    )
    assert files_under(tmp_path) == before


def test_resume_from_another_recipes_checkpoint_is_refused(brick_model, module_images, tmp_path):
    trained, _ = brick_model
    other = tmp_path / "starry.yaml"
    other.write_text(json.dumps({"size": 64, "styles": [{"image": str(module_images / "starry_night.jpg")}]}))
    before = files_under(trained.path.parent)
    result = run("train", other, "-o", trained.path, "--resume", "--iterations", 80, "--size", 32, "--batch-size", 2)
    one_line_exit_2(result, "resume: ")
    assert "checkpoint of another recipe" in result.stderr
    assert files_under(trained.path.parent) == before
    assert checkpoint_path(trained.path).exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("--blend", "nobody:1"), "blend: the model has no style 'nobody'; its styles are brick"),
        (("--blend", "brick:0"), "--blend: must be style:weight pairs with weights > 0"),
        (("--blend", "brick:nan"), "--blend: must be style:weight pairs"),
        (("--size", "50"), "size: 50x50 px: each side must be a multiple of 16"),
        (("--count", "0"), "--count: must be at least 1, got 0"),
    ],
)
def test_bad_sampling_options_are_one_line_and_write_nothing(brick_model, tmp_path, args, expected):
    trained, _ = brick_model
    arguments = {"--count": "2", "--size": "64", **dict(zip(args[::2], args[1::2]))}
    one_line_exit_2(run("sample", trained.path, "--out", tmp_path / "out", *sum(arguments.items(), ())), expected)
    assert not (tmp_path / "out").exists()


def _pickle_bomb(path: Path, marker: Path) -> Path:
    import os
    import pickle

    class Bomb:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path.write_bytes(pickle.dumps({"weights": Bomb()}))
    return path


def _hostile_models(folder: Path, good: Path) -> dict[str, tuple[Path, str]]:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    marker = folder / "pwned"
    with safe_open(str(good), "pt") as handle:
        metadata = handle.metadata()
    tensors = load_file(str(good))
    cases: dict[str, tuple[Path, str]] = {}
    cases["pickle"] = (_pickle_bomb(folder / "pickle.safetensors", marker), "not a texsynth model file")
    torch.save(tensors, folder / "torch.safetensors")
    cases["torch .pt"] = (folder / "torch.safetensors", "not a texsynth model file")
    (folder / "random.safetensors").write_bytes(bytes(range(256)) * 40)
    cases["random bytes"] = (folder / "random.safetensors", "not a texsynth model file")
    (folder / "truncated.safetensors").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    cases["truncated"] = (folder / "truncated.safetensors", "not a texsynth model file")
    save_file(tensors, str(folder / "foreign.safetensors"))
    cases["foreign"] = (folder / "foreign.safetensors", "not a texsynth model (no texsynth.model metadata)")
    wrong = dict(tensors)
    name = next(iter(wrong))
    wrong[name] = torch.zeros(3, 3)
    save_file(wrong, str(folder / "shape.safetensors"), metadata=metadata)
    cases["wrong shape"] = (folder / "shape.safetensors", "the architecture needs")
    future = json.loads(metadata["texsynth.model"])
    future["format_version"] = 99
    save_file(tensors, str(folder / "future.safetensors"), metadata={"texsynth.model": json.dumps(future)})
    cases["newer format"] = (folder / "future.safetensors", "model format version 99 is newer than texsynth")
    huge = json.loads(metadata["texsynth.model"])
    huge["architecture"]["widths"] = [10**9]
    save_file(tensors, str(folder / "huge.safetensors"), metadata={"texsynth.model": json.dumps(huge)})
    cases["absurd architecture"] = (folder / "huge.safetensors", "widths must be a whole number from 1 to 1024")
    mixed = json.loads(metadata["texsynth.model"])
    mixed["kind"] = "transfer"
    save_file(tensors, str(folder / "mixed.safetensors"), metadata={"texsynth.model": json.dumps(mixed)})
    cases["kind and network disagree"] = (folder / "mixed.safetensors", "a transfer model must hold a transfer_network")
    nan = {key: value.clone() for key, value in tensors.items()}
    nan[name].fill_(math.nan)
    save_file(nan, str(folder / "nan.safetensors"), metadata=metadata)
    cases["NaN weights"] = (folder / "nan.safetensors", "holds NaN or infinite values")
    return cases


def test_every_bad_model_file_is_one_line_and_no_code_runs(brick_model, tmp_path):
    trained, _ = brick_model
    cases = _hostile_models(tmp_path, trained.path)
    for label, (path, expected) in cases.items():
        for command in (("sample", path, "--count", "1", "--out", tmp_path / "out"), ("show", path)):
            result = run(*command)
            assert result.exit_code == 2, (label, command[0], result.output)
            lines = result.stderr.strip().splitlines()
            assert len(lines) == 1 and expected in lines[0] and str(path) in lines[0], (label, result.stderr)
    assert not (tmp_path / "pwned").exists(), "loading a model file ran code"
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ signals and GPUs


def test_ctrl_c_writes_a_usable_model_and_exits_130(brick_recipe, tmp_path, subprocess_env):
    import signal
    import subprocess
    import sys
    import time

    model = tmp_path / "m.safetensors"
    command = [sys.executable, "-m", "texsynth", "train", str(brick_recipe), "-o", str(model), "--iterations",
               "100000", "--size", "32", "--batch-size", "1", "--checkpoint-every", "2", "-q"]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=subprocess_env)
    # Interrupt once it is training (its first checkpoint is there), however long loading took on this machine.
    deadline = time.monotonic() + 300
    while not checkpoint_path(model).exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert b"Traceback" not in stderr and b"wrote a usable model" in stderr
    done = load_model(model)
    assert 0 < done.training["iterations"] < 100000
    assert sample(done, count=1, width=32, height=32).shape == (1, 3, 32, 32)
    assert checkpoint_path(model).exists() and not list(tmp_path.glob(".*.part"))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_training_and_sampling_run_on_cuda_in_bf16(module_images, tmp_path):
    recipe = recipe_of(module_images, [("brick.jpg", 0.5), ("starry_night.jpg", 0.5)], tileable=True)
    options = TrainingOptions(iterations=30, batch_size=4, size=64, checkpoint_every=30)
    trained = train(recipe, output=tmp_path / "m.safetensors", options=options, device="cuda")
    history = [entry["style"] for entry in trained.model.training["history"]]
    assert sum(history[-5:]) < sum(history[:5])
    on_gpu = sample(trained.model, count=8, width=64, height=64, device="cuda")
    on_cpu = sample(load_model(trained.path), count=8, width=64, height=64)
    assert (on_gpu - on_cpu).abs().mean() < 0.02, "bf16 on the GPU makes the CPU's samples, within rounding"


def test_the_learning_rate_is_flat_then_falls_at_the_end():
    from texsynth.fast.train import FINAL_RATE, learning_rate_at

    rates = [learning_rate_at(i, 100, 0.01) for i in range(1, 101)]
    assert rates[:70] == [0.01] * 70
    assert all(later < earlier for earlier, later in zip(rates[70:], rates[71:]))
    assert rates[-1] == pytest.approx(0.01 * FINAL_RATE)
