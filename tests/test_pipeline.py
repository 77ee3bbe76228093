"""End-to-end synthesis on the real shipped VGG19 at 64 px: what a user would see, measured."""

from __future__ import annotations

import pytest
import torch

from texsynth import parse_recipe, synthesize
from texsynth.initial import noise
from texsynth.io import load_image
from texsynth.metrics import Measure

SIZE = 64


@pytest.fixture(scope="module")
def measure() -> Measure:
    return Measure()


def texture(images, styles, steps=40, device="cpu", **fields):
    data = {
        "size": SIZE,
        "steps": steps,
        "seed": 0,
        "styles": [{"image": str(images / n), "weight": w} for n, w in styles],
    }
    data.update(fields)
    return synthesize(parse_recipe(data), device=device)


def style_image(images, name):
    return load_image(images / name, (SIZE, SIZE))


def test_texture_moves_far_closer_to_its_style_than_the_noise_it_started_from(images, measure):
    grams = measure.grams([style_image(images, "brick.jpg")])
    start = noise((1, 3, SIZE, SIZE), 0)
    result = texture(images, [("brick.jpg", 1.0)])
    assert result.steps == 40 and not result.interrupted
    assert result.image.shape == (1, 3, SIZE, SIZE)
    assert 0.0 <= result.image.min() and result.image.max() <= 1.0
    assert measure.style_distance(result.image, grams) < 0.1 * measure.style_distance(start, grams)


def test_blend_sits_between_its_two_styles(images, measure):
    starry, brick = style_image(images, "starry_night.jpg"), style_image(images, "brick.jpg")
    target_starry, target_brick = measure.grams([starry]), measure.grams([brick])
    target_blend = measure.grams([starry, brick], [0.5, 0.5])

    pure_starry = texture(images, [("starry_night.jpg", 1.0)]).image
    pure_brick = texture(images, [("brick.jpg", 1.0)]).image
    blend = texture(images, [("starry_night.jpg", 0.5), ("brick.jpg", 0.5)]).image

    to_blend = {
        name: measure.style_distance(img, target_blend)
        for name, img in [("blend", blend), ("starry", pure_starry), ("brick", pure_brick)]
    }
    assert to_blend["blend"] < to_blend["starry"] and to_blend["blend"] < to_blend["brick"], to_blend
    assert measure.style_distance(pure_starry, target_starry) < measure.style_distance(pure_starry, target_brick)
    assert measure.style_distance(pure_brick, target_brick) < measure.style_distance(pure_brick, target_starry)


def test_style_transfer_keeps_its_content(images, measure):
    content_field = {"image": str(images / "chelsea.jpg")}
    transfer = texture(images, [("starry_night.jpg", 1.0)], size=[96, 64], content=content_field)
    pure = texture(images, [("starry_night.jpg", 1.0)], size=[96, 64])
    content = load_image(images / "chelsea.jpg", (96, 64))
    assert transfer.image.shape == (1, 3, 64, 96)
    assert measure.content_distance(transfer.image, content) < 0.8 * measure.content_distance(pure.image, content)
    # ...and still takes on the style: closer to it than the content photo itself is.
    grams = measure.grams([load_image(images / "starry_night.jpg", (96, 60))])
    assert measure.style_distance(transfer.image, grams) < measure.style_distance(content, grams)


def test_same_recipe_and_seed_give_the_same_image(images):
    first = texture(images, [("brick.jpg", 1.0)], steps=5)
    again = texture(images, [("brick.jpg", 1.0)], steps=5)
    other_seed = texture(images, [("brick.jpg", 1.0)], steps=5, seed=1)
    assert torch.equal(first.image, again.image)
    assert not torch.equal(first.image, other_seed.image)


@pytest.mark.parametrize("optimizer", ["lbfgs", "adam"])
def test_interrupt_returns_the_best_image_so_far(images, optimizer):
    recipe = parse_recipe(
        {"size": SIZE, "steps": 50, "optimizer": optimizer, "styles": [{"image": str(images / "brick.jpg")}]}
    )
    seen = []

    def stop_at_step_4(progress):
        seen.append(progress.values()["total"])
        if progress.step == 4:
            raise KeyboardInterrupt

    result = synthesize(recipe, device="cpu", on_step=stop_at_step_4)
    assert result.interrupted and result.steps == 4
    assert result.losses["style"] <= min(seen) + 1e-9


def test_adam_also_synthesizes(images, measure):
    grams = measure.grams([style_image(images, "brick.jpg")])
    start = noise((1, 3, SIZE, SIZE), 0)
    result = texture(images, [("brick.jpg", 1.0)], steps=60, optimizer="adam", learning_rate=0.03)
    assert measure.style_distance(result.image, grams) < 0.5 * measure.style_distance(start, grams)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_closely(images):
    recipe = parse_recipe({"size": SIZE, "steps": 3, "styles": [{"image": str(images / "brick.jpg")}]})
    cpu = synthesize(recipe, device="cpu").image
    gpu = synthesize(recipe, device="cuda").image
    assert (cpu - gpu).abs().mean() < 0.02


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_the_cuda_graph_replay_follows_the_eager_loop(images, measure, monkeypatch):
    """A Gram texture long enough to be captured: the replayed graph does what the eager steps do."""
    recipe = parse_recipe(
        {
            "size": SIZE,
            "steps": 30,
            "style_loss": "gram",
            "precision": "fp32",
            "styles": [{"image": str(images / "brick.jpg")}],
        }
    )
    grams = measure.grams([style_image(images, "brick.jpg")])
    graphed = synthesize(recipe, device="cuda")
    monkeypatch.setenv("TEXSYNTH_CUDA_GRAPHS", "0")
    eager = synthesize(recipe, device="cuda")
    assert graphed.steps == eager.steps == 30
    assert (graphed.image - eager.image).abs().mean() < 0.01
    start = noise((1, 3, SIZE, SIZE), 0)
    assert measure.style_distance(graphed.image, grams) < 0.2 * measure.style_distance(start, grams)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_default_loss_blend_runs_on_cuda(images, measure):
    """The sliced-Wasserstein blend draws its target sample on the device, from the loss's CUDA generator."""
    grams = measure.grams([style_image(images, "starry_night.jpg"), style_image(images, "brick.jpg")], [0.5, 0.5])
    start = noise((1, 3, SIZE, SIZE), 0)
    result = texture(images, [("starry_night.jpg", 0.5), ("brick.jpg", 0.5)], device="cuda")
    assert result.steps == 40 and set(result.losses) == {"style"}
    # The same run on the CPU ends at 0.20 of the start's distance.
    assert measure.style_distance(result.image, grams) < 0.4 * measure.style_distance(start, grams)


def test_sliced_wasserstein_texture_moves_towards_its_style(images, measure):
    style = style_image(images, "gravel.jpg")
    start = noise((1, 3, SIZE, SIZE), 0)
    result = texture(images, [("gravel.jpg", 1.0)], steps=40, style_loss="sliced_wasserstein")
    assert set(result.losses) == {"style"}
    assert measure.sliced_distance(result.image, [style]) < 0.2 * measure.sliced_distance(start, [style])


def test_a_reblended_graph_equals_the_graph_of_a_recipe_with_those_weights(images):
    from texsynth.targets import compile_at, make_extractor

    def recipe(weights):
        styles = [
            {"image": str(images / name), "weight": w} for name, w in zip(("brick.jpg", "starry_night.jpg"), weights)
        ]
        return parse_recipe({"size": 32, "styles": styles})

    extractor = make_extractor(recipe([1, 1]), torch.device("cpu"))
    image = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    features = extractor(image)
    reblended = compile_at(recipe([1, 1]), extractor, 32, 32).graph
    reblended.set_blend([0.2, 0.8])
    built = compile_at(recipe([0.2, 0.8]), extractor, 32, 32).graph
    for graph in (reblended, built):
        graph.reseed_random_terms(7)
    assert torch.equal(reblended(features)["style"], built(features)["style"])
