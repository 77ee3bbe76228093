"""The benchmark's textbook implementation builds and evaluates (one evaluation at 32 px); the script starts."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
BENCHMARKS = ROOT / "benchmarks"


def load_textbook():
    spec = importlib.util.spec_from_file_location("texsynth_benchmark_textbook", BENCHMARKS / "textbook.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_textbook_model_gives_a_finite_loss_at_32_px():
    textbook = load_textbook()
    assert textbook.tutorial_name("relu4_2") == "relu_10" and textbook.tutorial_name("conv1_1") == "conv_1"
    generator = torch.Generator().manual_seed(0)
    style, content = torch.rand(1, 3, 32, 32, generator=generator), torch.rand(1, 3, 32, 32, generator=generator)
    model, style_losses, content_losses = textbook.textbook_model(style, content, "relu", torch.device("cpu"))
    assert len(style_losses) == 5 and len(content_losses) == 1
    losses = []

    def stop_after_one(run, image):
        losses.append(sum(sl.loss for sl in style_losses) * textbook.STYLE_WEIGHT + content_losses[0].loss)
        raise textbook.Enough

    image = content.clone()
    try:
        textbook.run_style_transfer(model, style_losses, content_losses, image, on_eval=stop_after_one)
    except textbook.Enough:
        pass
    assert len(losses) == 1 and math.isfinite(losses[0].item()) and losses[0].item() > 0
    assert image.grad is not None and torch.isfinite(image.grad).all()


def run_script(env: dict[str, str], name: str, *args: str) -> str:
    # The script's folder, not the checkout, is first on its path: the environment points it at this checkout.
    done = subprocess.run([sys.executable, str(BENCHMARKS / name), *args], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_benchmark_script_starts(subprocess_env):
    out = run_script(subprocess_env, "speed.py", "--help")
    assert "--device" in out and "--evals" in out


def test_the_engine_tiles_and_quality_scripts_run_their_smallest_settings(tmp_path, subprocess_env):
    engine = run_script(
        subprocess_env,
        "engine.py", "--device", "cpu", "--skip", "a", "c", "--size", "32", "--tile-size", "32", "--batches", "1",
        "--warmup", "1", "--repeats", "1", "--agreement-steps", "2", "--out", str(tmp_path),
    )
    assert "image-evaluations per second" in engine and "bf16 vs fp32" in engine
    tiles = run_script(subprocess_env, "tiles.py", "--size", "32", "--steps", "2", "--tiles", "2", "--batch", "2")
    assert "batched / one at a time:" in tiles
    quality = run_script(
        subprocess_env,
        "quality.py", "--size", "32", "--steps", "2", "--textures", "brick.jpg", "--losses", "gram",
        "sliced_wasserstein", "--out", str(tmp_path),
    )
    assert "sliced_wasserstein: SW distance vs gram's" in quality


def test_the_loss_kernel_script_runs_its_smallest_setting(subprocess_env):
    out = run_script(subprocess_env, "losses.py", "--size", "32", "--rounds", "1", "--steps", "1")
    assert "with torch.sort" in out and "Gram product and its gradient" in out


def test_the_roofline_script_counts_the_network_and_bounds_the_schedule(subprocess_env):
    out = run_script(subprocess_env, "roofline.py", "--device", "cpu", "--matrix", "64", "--repeats", "1")
    assert "fp32" in out and "x (a) fp32" in out
    assert "(c) brick.yaml's schedule (100 at 64x64, 100 at 128x128, 100 at 256x256)" in out


def test_the_first_run_script_runs_its_baseline_from_another_checkout(tmp_path, subprocess_env):
    # A checkout whose package is this one's: the baseline imports it through PYTHONPATH, from that folder.
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "texsynth").symlink_to(ROOT / "texsynth")
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(f"size: 32\nsteps: 2\ntileable: true\nstyles:\n  - image: {ROOT / 'recipes/images/brick.jpg'}\n")
    out = run_script(subprocess_env, "first_run.py", "--recipe", str(recipe), "--baseline", "",
                     "--baseline-checkout", str(tmp_path / "old"), "--threads", "1")  # fmt: skip
    assert f"code from {tmp_path / 'old'}" in out and "worst window" in out


def test_the_per_layer_script_judges_an_image_at_every_layer_and_phase(tmp_path, subprocess_env):
    from PIL import Image

    from conftest import IMAGES

    Image.open(IMAGES / "brick.jpg").convert("RGB").resize((32, 32)).save(tmp_path / "brick.png")
    out = run_script(subprocess_env, "layers.py", str(ROOT / "recipes" / "brick.yaml"), str(tmp_path / "brick.png"))
    header, row = out.strip().splitlines()[-2:]
    assert "relu5_1" in header and "phases" in header
    assert row.startswith("brick.png") and len(row.split()) == 9  # name, style, five layers, phase mean and max


def test_the_feed_forward_benchmark_runs_its_smallest_setting(tmp_path, subprocess_env):
    from texsynth import parse_recipe
    from texsynth.fast import TrainingOptions, train

    images = ROOT / "recipes" / "images"
    photos = ROOT / "tests" / "data" / "photos"
    options = TrainingOptions(iterations=2, batch_size=1, size=32)

    def style(*names):
        return [{"image": str(images / name)} for name in names]

    texture = parse_recipe({"size": 32, "steps": 2, "tileable": True, "styles": style("brick.jpg")})
    blend = parse_recipe({"size": 32, "steps": 2, "styles": style("starry_night.jpg", "the_scream.jpg")})
    transfer = parse_recipe(
        {"size": 48, "steps": 2, "styles": style("starry_night.jpg"), "content": {"image": str(images / "chelsea.jpg")}}
    )
    train(texture, output=tmp_path / "t.safetensors", options=options)
    train(blend, output=tmp_path / "b.safetensors", options=options)
    train(transfer, output=tmp_path / "p.safetensors", options=options, content_dir=photos / "train")
    out = run_script(
        subprocess_env,
        "fast.py", "--texture-model", str(tmp_path / "t.safetensors"), "--blend-model", str(tmp_path / "b.safetensors"),
        "--transfer-model", str(tmp_path / "p.safetensors"), "--photos", str(photos / "held_out" / "squirrel_cls.jpg"),
        "--samples", "2", "--optimized", "2", "--held-out", "1", "--speed-size", "48", "--out", str(tmp_path / "o"),
    )  # fmt: skip
    assert "samples per second" in out and "pixel seam" in out and "diversity" in out
    assert "the 50/50 blend" in out and "ms per 48 px photo" in out and "content distance" in out
