"""Each recipe control changes the result the way it says, measured on the real VGG19 at 32-48 px."""

from __future__ import annotations

import pytest
import torch

from texsynth import parse_recipe, synthesize
from texsynth.features import VGGFeatures
from texsynth.initial import NOISE_AMPLITUDE, StartInputs, mean_colour, noise, starting_image
from texsynth.io import image_size, load_image
from texsynth.losses import content_loss, gram_loss, gram_matrix, total_variation
from texsynth.metrics import Measure
from texsynth.recipe import Init
from texsynth.targets import style_image_size

LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1", "relu2_2", "relu4_2")


@pytest.fixture(scope="module")
def vgg() -> dict[str, VGGFeatures]:
    return {"max": VGGFeatures(LAYERS), "avg": VGGFeatures(LAYERS, pooling="avg")}


def run(images, steps=12, **fields):
    data = {"size": 32, "steps": steps, "seed": 0, "styles": [{"image": str(images / "brick.jpg")}]}
    data.update(fields)
    return synthesize(parse_recipe(data), device="cpu").image


def gram_error(extractor, image, style, layer):
    with torch.no_grad():
        return float(gram_loss(gram_matrix(extractor(image)[layer]), gram_matrix(extractor(style)[layer])[0])[0])


def content_error(extractor, image, content, layer):
    with torch.no_grad():
        return float(content_loss(extractor(image)[layer], extractor(content)[layer])[0])


def transfer_fields(images, **content):
    return {"size": [48, 32], "init": "noise", "content": {"image": str(images / "chelsea.jpg"), **content}}


def test_tv_weight_smooths_the_result(images):
    assert total_variation(run(images, tv_weight=10.0)) < 0.5 * total_variation(run(images))


def test_style_layer_weights_decide_which_layers_match(images, vgg):
    brick = load_image(images / "brick.jpg", (32, 32))
    shallow = run(images, style_layers={"relu1_1": 1.0, "relu4_1": 0.01})
    deep = run(images, style_layers={"relu1_1": 0.01, "relu4_1": 1.0})
    error = {
        (name, layer): gram_error(vgg["max"], image, brick, layer)
        for name, image in (("shallow", shallow), ("deep", deep))
        for layer in ("relu1_1", "relu4_1")
    }
    assert error["shallow", "relu1_1"] < 0.2 * error["deep", "relu1_1"], error
    assert error["deep", "relu4_1"] < 0.5 * error["shallow", "relu4_1"], error


def test_pooling_changes_the_network_the_style_is_matched_in(images, vgg):
    brick = load_image(images / "brick.jpg", (32, 32))
    by_max, by_avg = run(images, pooling="max"), run(images, pooling="avg")
    assert not torch.equal(by_max, by_avg)
    # Each result matches the style best as seen through the pooling it was made with.
    assert gram_error(vgg["avg"], by_avg, brick, "relu4_1") < 0.5 * gram_error(vgg["avg"], by_max, brick, "relu4_1")
    assert gram_error(vgg["max"], by_max, brick, "relu4_1") < 0.5 * gram_error(vgg["max"], by_avg, brick, "relu4_1")


def test_content_layers_decide_which_features_are_kept(images, vgg):
    chelsea = load_image(images / "chelsea.jpg", (48, 32))
    shallow = run(images, steps=10, **transfer_fields(images, layers={"relu2_2": 1.0}, weight=30.0))
    deep = run(images, steps=10, **transfer_fields(images, layers={"relu4_2": 1.0}, weight=30.0))
    assert content_error(vgg["max"], shallow, chelsea, "relu2_2") < 0.7 * content_error(
        vgg["max"], deep, chelsea, "relu2_2"
    )
    assert content_error(vgg["max"], deep, chelsea, "relu4_2") < 0.8 * content_error(
        vgg["max"], shallow, chelsea, "relu4_2"
    )


def test_content_weight_decides_how_much_of_the_photo_is_kept(images, vgg):
    chelsea = load_image(images / "chelsea.jpg", (48, 32))
    strong = run(images, **transfer_fields(images, weight=10.0))
    weak = run(images, **transfer_fields(images, weight=0.1))
    assert content_error(vgg["max"], strong, chelsea, "relu4_2") < 0.9 * content_error(
        vgg["max"], weak, chelsea, "relu4_2"
    )


def test_style_scale_sets_the_style_image_size_from_the_output_long_side(images):
    width, height = image_size(images / "brick.jpg")
    assert max(style_image_size(images / "brick.jpg", 0.5, 256)) == 128
    assert max(style_image_size(images / "brick.jpg", 2.0, 256)) == 512
    small = style_image_size(images / "brick.jpg", 0.5, 256)
    assert abs(small[0] / small[1] - width / height) < 0.02


def test_style_scale_sets_the_size_of_the_style_features_on_the_output(images):
    measure = Measure()
    small = measure.grams([load_image(images / "brick.jpg", (24, 24))])
    large = measure.grams([load_image(images / "brick.jpg", (96, 96))])
    half = run(images, size=48, styles=[{"image": str(images / "brick.jpg"), "scale": 0.5}])
    double = run(images, size=48, styles=[{"image": str(images / "brick.jpg"), "scale": 2.0}])
    assert measure.style_distance(half, small) < 0.5 * measure.style_distance(half, large)
    assert measure.style_distance(double, large) < 0.5 * measure.style_distance(double, small)


# ------------------------------------------------------------------ starting images


def test_noise_is_faint_around_mid_grey_and_seeded():
    start = noise((1, 3, 16, 16), seed=3)
    assert (start - 0.5).abs().max() <= NOISE_AMPLITUDE
    assert torch.equal(start, noise((1, 3, 16, 16), seed=3)) and not torch.equal(start, noise((1, 3, 16, 16), 4))


def test_style_mean_start_is_faint_noise_around_the_blends_mean_colour(images):
    brick, grass = load_image(images / "brick.jpg", (32, 32)), load_image(images / "grass.jpg", (32, 32))
    colour = mean_colour([brick, grass], [3.0, 1.0])
    assert torch.allclose(colour, 0.75 * brick.mean((0, 2, 3)) + 0.25 * grass.mean((0, 2, 3)))
    start = starting_image(Init.STYLE_MEAN, StartInputs(shape=(1, 3, 32, 32), seed=0, style_mean=colour))
    assert (start - colour.view(1, 3, 1, 1)).abs().max() <= NOISE_AMPLITUDE + 1e-6
    assert torch.allclose(start.mean((0, 2, 3)), colour, atol=0.01)


def test_init_image_and_content_start_from_their_image(images):
    gravel = load_image(images / "gravel.jpg", (32, 32))
    start = starting_image(Init.IMAGE, StartInputs(shape=(2, 3, 32, 32), seed=0, image=gravel))
    assert start.shape == (2, 3, 32, 32) and torch.equal(start[1:], gravel)
    assert torch.equal(starting_image(Init.CONTENT, StartInputs(shape=(1, 3, 32, 32), seed=0, content=gravel)), gravel)


@pytest.mark.parametrize("init", ["image", "style_mean"])
def test_a_run_begins_where_init_says(images, init):
    # One tiny Adam step: the result is still essentially the starting image.
    fields = {"init": init, "optimizer": "adam", "learning_rate": 1e-4, "steps": 1}
    if init == "image":
        result = run(images, init_image=str(images / "gravel.jpg"), **fields)
        assert (result - load_image(images / "gravel.jpg", (32, 32))).abs().max() < 0.01
    else:
        result = run(images, **fields)
        brick = load_image(images / "brick.jpg", (32, 32))
        assert torch.allclose(result.mean((0, 2, 3)), brick.mean((0, 2, 3)), atol=0.01)
