"""The coarse-to-fine pyramid: its sizes and step budget, and that each scale starts from the previous one."""

from __future__ import annotations

import pytest
import torch

import texsynth.api as api
from conftest import IMAGES
from texsynth import parse_recipe, synthesize
from texsynth.preflight import scale_plan
from texsynth.scales import auto_scale_count, plan_scales, upsample


def test_auto_count_is_one_up_to_256_then_one_more_per_doubling():
    assert [auto_scale_count(n) for n in (64, 256, 300, 512, 1024, 2048)] == [1, 1, 2, 3, 4, 5]


def test_textures_up_to_256_px_start_near_64_px_and_larger_ones_as_before():
    assert [auto_scale_count(n, texture=True) for n in (32, 64, 128, 256, 512, 1024)] == [1, 1, 2, 3, 3, 4]


def test_an_even_plan_gives_every_scale_the_same_steps_and_the_rest_to_the_finest():
    plan = plan_scales(256, 256, 301, 3, min_side=32, multiple=16, even=True)
    assert [(s.width, s.steps) for s in plan] == [(64, 100), (128, 100), (256, 101)]


def test_a_texture_recipe_plans_an_even_pyramid_and_a_transfer_the_halving_one():
    texture = parse_recipe({"size": 256, "styles": [{"image": str(IMAGES / "brick.jpg")}]})
    styles = [{"image": str(IMAGES / "brick.jpg")}]
    transfer = parse_recipe({"size": 512, "styles": styles, "content": {"image": str(IMAGES / "chelsea.jpg")}})
    assert [s.steps for s in scale_plan(texture, 256, 256)] == [100, 100, 100]
    large = [s.steps for s in scale_plan(texture.model_copy(update={"size": 512}), 512, 512)]
    assert len(large) == 3 and large[0] > large[1] > large[2]
    steps = [s.steps for s in scale_plan(transfer, 512, 384)]
    assert len(steps) == 3 and steps[0] > steps[1] > steps[2]
    assert [s.width for s in scale_plan(texture.model_copy(update={"scales": 1}), 256, 256)] == [256]


def test_plan_doubles_up_to_the_exact_size_and_spends_most_steps_coarse():
    plan = plan_scales(512, 384, 300, 3, min_side=32)
    assert [(s.width, s.height) for s in plan] == [(128, 96), (256, 192), (512, 384)]
    assert sum(s.steps for s in plan) == 300
    assert plan[0].steps > plan[1].steps > plan[2].steps > 0


def test_plan_drops_scales_below_the_minimum_and_rounds_for_tiles():
    plan = plan_scales(64, 64, 30, 4, min_side=32)
    assert [(s.width, s.height) for s in plan] == [(32, 32), (64, 64)]
    tile_plan = plan_scales(240, 240, 30, 2, min_side=16, multiple=16)
    assert tile_plan[0].width % 16 == 0 and tile_plan[-1].width == 240


def test_one_scale_gets_every_step():
    assert [(s.width, s.steps) for s in plan_scales(200, 100, 7, 1, min_side=16)] == [(200, 7)]


def test_circular_upsampling_keeps_opposite_edges_continuous():
    # A smooth periodic pattern: after upsampling, the wrap-around step is as small as inside steps.
    y, x = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    tile = (0.5 + 0.4 * torch.sin(2 * torch.pi * (x + y) / 16)).expand(1, 3, 16, 16)
    big = upsample(tile, 32, 32, circular=True)
    wrap = (big[..., :, 0] - big[..., :, -1]).abs().mean()
    inside = (big[..., :, 1:] - big[..., :, :-1]).abs().mean()
    assert wrap < 1.5 * inside
    plain = upsample(tile, 32, 32)
    assert (plain[..., :, 0] - plain[..., :, -1]).abs().mean() > wrap


def test_each_scale_starts_from_the_previous_result(images, monkeypatch):
    calls = []
    real = api.optimize

    def spy(start, objective, **options):
        result = real(start, objective, **options)
        calls.append((start.clone(), result.image.clone(), options["steps"]))
        return result

    monkeypatch.setattr(api, "optimize", spy)
    steps_seen = []
    recipe = parse_recipe({"size": 64, "steps": 9, "scales": 2, "styles": [{"image": str(images / "brick.jpg")}]})
    result = synthesize(recipe, on_step=lambda p: steps_seen.append((p.step, p.steps, p.scale, p.scales)))

    assert [tuple(start.shape[-2:]) for start, _, _ in calls] == [(32, 32), (64, 64)]
    assert sum(steps for _, _, steps in calls) == 9 == result.steps
    first_result, second_start = calls[0][1], calls[1][0]
    assert torch.allclose(second_start, upsample(first_result, 64, 64))
    assert result.image.shape == (1, 3, 64, 64)
    # Progress counts over the whole pyramid and names the scale.
    assert [s[0] for s in steps_seen] == list(range(1, 10))
    assert {s[1] for s in steps_seen} == {9} and [s[2] for s in steps_seen][-1] == 1


def test_bf16_convolutions_agree_with_fp32(images):
    """bf16 autocast (the CUDA default) stays close to fp32, checked on the CPU at a small size."""
    from texsynth.features import VGGFeatures
    from texsynth.graph import style_targets
    from texsynth.io import load_image
    from texsynth.losses import gram_loss, gram_matrix

    layers = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    image = load_image(images / "starry_night.jpg", (48, 32))
    fp32, bf16 = VGGFeatures(layers), VGGFeatures(layers, autocast=torch.bfloat16)
    for layer in layers:
        a, b = gram_matrix(fp32(image)[layer]), gram_matrix(bf16(image)[layer].float())
        assert ((a - b).norm() / a.norm()) < 0.05, layer
    # The loss the optimizer sees moves by far less than what optimization changes.
    other = load_image(images / "brick.jpg", (48, 32))
    target = style_targets(fp32, [other], [1.0], layers)
    loss32 = sum(float(gram_loss(gram_matrix(fp32(image)[layer]), target[layer])) for layer in layers)
    loss16 = sum(float(gram_loss(gram_matrix(bf16(image)[layer].float()), target[layer])) for layer in layers)
    assert abs(loss16 - loss32) / loss32 < 0.05


def test_bf16_synthesis_looks_like_fp32(images):
    recipe = {"size": 32, "steps": 15, "scales": 1, "styles": [{"image": str(images / "brick.jpg")}]}
    fp32 = synthesize(parse_recipe({**recipe, "precision": "fp32"})).image
    bf16 = synthesize(parse_recipe({**recipe, "precision": "bf16"})).image
    assert (fp32 - bf16).abs().mean() < 0.05


def test_auto_leaves_out_coarse_scales_a_style_image_would_be_too_small_at():
    # starry_night.jpg is 512×320: at a 48 px coarsest scale it would be 48×30 px,
    # 1 px high at relu5_1, which a tile's mirror-padded style cannot be.
    style = [{"image": str(IMAGES / "starry_night.jpg")}]
    tile = parse_recipe({"size": 96, "tileable": True, "styles": style})
    assert [s.width for s in scale_plan(tile, 96, 96)] == [96]
    assert [s.width for s in scale_plan(tile.model_copy(update={"size": 128}), 128, 128)] == [64, 128]
    plain = parse_recipe({"size": 96, "styles": style})  # zero padding: one pixel is enough
    assert [s.width for s in scale_plan(plain, 96, 96)] == [48, 96]


def test_a_tile_whose_style_image_is_too_thin_for_its_mirror_padding_is_refused_up_front(tmp_path):
    from PIL import Image

    from texsynth import TexsynthError

    thin = tmp_path / "thin.png"
    Image.new("RGB", (512, 200), "grey").save(thin)  # 64×25 px at 64 px: 1 px high at relu5_1
    data = {"size": 64, "steps": 1, "styles": [{"image": str(thin)}]}
    synthesize(parse_recipe(data))  # zero-padded, as a plain texture's style is: 1 px will do
    with pytest.raises(TexsynthError, match=r"styles\[0\]\.image: .*64x25 px .*needs at least 32 px per side"):
        parse_recipe({**data, "tileable": True})
