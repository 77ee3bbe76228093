"""Colour preservation: the colour maths with known answers, then what a transfer keeps."""

from __future__ import annotations

import pytest
import torch

from texsynth import parse_recipe, synthesize
from texsynth.colour import (
    colour_statistics,
    grey,
    match_colour,
    match_luminance,
    rgb_to_yiq,
    with_chroma_of,
    yiq_to_rgb,
)
from texsynth.io import load_image

SIZE = (48, 32)


@pytest.fixture
def chelsea(images):
    return load_image(images / "chelsea.jpg", SIZE)


@pytest.fixture
def starry(images):
    return load_image(images / "starry_night.jpg", SIZE)


def chroma(image):
    return rgb_to_yiq(image)[:, 1:]


def test_yiq_round_trips_and_white_has_full_luminance_and_no_chroma():
    image = torch.rand(2, 3, 5, 7)
    assert torch.allclose(yiq_to_rgb(rgb_to_yiq(image)), image, atol=1e-6)
    white = rgb_to_yiq(torch.ones(1, 3, 1, 1)).flatten()
    assert torch.allclose(white, torch.tensor([1.0, 0.0, 0.0]), atol=1e-5)


def test_grey_repeats_the_luminance_in_every_channel(starry):
    result = grey(starry)
    assert torch.equal(result[:, 0], result[:, 1]) and torch.equal(result[:, 1], result[:, 2])
    assert torch.allclose(result[:, :1], rgb_to_yiq(starry)[:, :1])


def test_match_luminance_gives_the_style_the_contents_brightness_and_contrast(starry, chelsea):
    matched = rgb_to_yiq(match_luminance(starry, chelsea))[:, 0]
    target = rgb_to_yiq(chelsea)[:, 0]
    assert abs(float(matched.mean() - target.mean())) < 0.01
    assert abs(float(matched.std() - target.std())) < 0.01
    assert abs(float(rgb_to_yiq(starry)[:, 0].std() - target.std())) > 0.05, "test images too alike to tell"


def test_match_colour_gives_the_style_the_contents_colour_mean_and_covariance(starry, chelsea):
    mean, covariance = colour_statistics(match_colour(starry, chelsea))
    target_mean, target_covariance = colour_statistics(chelsea)
    before_mean, _ = colour_statistics(starry)
    assert (mean - target_mean).abs().max() < 0.01 < (before_mean - target_mean).abs().max()
    assert (covariance - target_covariance).abs().max() < 0.1 * target_covariance.abs().max()


def test_with_chroma_of_keeps_the_luminance_and_takes_the_chroma(starry, chelsea):
    result = with_chroma_of(starry, chelsea)
    unclipped = ((yiq_to_rgb(torch.cat([rgb_to_yiq(starry)[:, :1], chroma(chelsea)], 1)) - result).abs() < 1e-6).all(1)
    assert unclipped.float().mean() > 0.8
    assert torch.allclose(chroma(result)[:, :, unclipped[0]], chroma(chelsea)[:, :, unclipped[0]], atol=1e-4)


def transfer(images, mode, steps=12, on_step=None, init="noise"):
    recipe = parse_recipe(
        {
            "size": list(SIZE),
            "steps": steps,
            "init": init,
            "styles": [{"image": str(images / "starry_night.jpg")}],
            "content": {"image": str(images / "chelsea.jpg")},
            "preserve_colour": mode,
        }
    )
    return synthesize(recipe, device="cpu", on_step=on_step).image


def test_luminance_transfer_keeps_the_contents_colours_and_shows_them_in_previews(images, chelsea):
    previews = []
    kept = transfer(images, "luminance", on_step=lambda progress: previews.append(progress.image.clone()))
    plain = transfer(images, "none")
    # Exactly the content's chroma wherever the recombined colour did not clip.
    assert (chroma(kept) - chroma(chelsea)).abs().median() < 0.005
    assert (chroma(plain) - chroma(chelsea)).abs().median() > 4 * (chroma(kept) - chroma(chelsea)).abs().median()
    assert len(previews) == 12 and (chroma(previews[-1]) - chroma(chelsea)).abs().median() < 0.005
    # ...and it is a transfer, not the content photo: the luminance changed.
    assert (rgb_to_yiq(kept)[:, 0] - rgb_to_yiq(chelsea)[:, 0]).abs().mean() > 0.03


def test_histogram_matching_moves_the_palette_towards_the_content(images, chelsea, starry):
    content_mean, _ = colour_statistics(chelsea)
    # Started from the content, a plain transfer drifts to the painting's blues; a matched one stays.
    matched_mean, _ = colour_statistics(transfer(images, "histogram", init="content"))
    plain_mean, _ = colour_statistics(transfer(images, "none", init="content"))
    assert (matched_mean - content_mean).norm() < 0.02
    assert (plain_mean - content_mean).norm() > 0.1
