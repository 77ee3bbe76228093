"""Known answers, function == module, and float64 gradchecks for every loss."""

from __future__ import annotations

import pytest
import torch

from texsynth.losses import (
    ContentLoss,
    GramLoss,
    TotalVariationLoss,
    content_loss,
    gram_loss,
    gram_matrix,
    total_variation,
)


def test_gram_of_a_known_tensor():
    # Two channels over four positions: rows [1, 2, 3, 4] and [1, 0, 1, 0].
    features = torch.tensor([[1.0, 2.0, 3.0, 4.0], [1.0, 0.0, 1.0, 0.0]]).view(1, 2, 2, 2)
    expected = torch.tensor([[30.0, 4.0], [4.0, 2.0]]) / 4
    assert torch.allclose(gram_matrix(features)[0], expected)


def test_gram_does_not_depend_on_positions_or_size():
    features = torch.rand(1, 8, 6, 6)
    shuffled = features.flatten(2)[:, :, torch.randperm(36)].view(1, 8, 6, 6)
    tiled = features.repeat(1, 1, 2, 2)
    assert torch.allclose(gram_matrix(features), gram_matrix(shuffled), atol=1e-6)
    assert torch.allclose(gram_matrix(features), gram_matrix(tiled), atol=1e-6)


def test_gram_loss_is_a_relative_error():
    target = torch.rand(5, 5)
    assert gram_loss(target[None], target).item() == pytest.approx(0.0)
    assert gram_loss(torch.zeros(1, 5, 5), target).item() == pytest.approx(1.0)
    assert gram_loss(2 * target[None], target).item() == pytest.approx(1.0)
    # Scaling both by the same factor (a brighter layer) leaves the loss unchanged.
    other = torch.rand(1, 5, 5)
    assert gram_loss(10 * other, 10 * target).item() == pytest.approx(gram_loss(other, target).item(), rel=1e-5)


def test_losses_give_one_value_per_batch_item():
    features = torch.rand(3, 4, 8, 8)
    target = torch.rand(1, 4, 8, 8)
    assert GramLoss(gram_matrix(target))(features).shape == (3,)
    assert ContentLoss(target)(features).shape == (3,)
    assert TotalVariationLoss()(features).shape == (3,)
    single = GramLoss(gram_matrix(target))(features[1:2])
    assert torch.allclose(GramLoss(gram_matrix(target))(features)[1], single[0])


def test_content_loss_known_values():
    target = torch.rand(1, 4, 5, 5)
    assert content_loss(target, target).item() == pytest.approx(0.0)
    assert content_loss(torch.zeros_like(target), target).item() == pytest.approx(1.0)


def test_total_variation_of_a_constant_image_is_zero_and_of_a_step_is_known():
    assert total_variation(torch.full((1, 3, 8, 8), 0.3)).item() == 0.0
    step = torch.zeros(1, 1, 2, 2)
    step[..., 1] = 1.0  # right column bright: two horizontal jumps of 1, none vertical
    assert total_variation(step).item() == pytest.approx(1.0)


def test_function_equals_module():
    features, target = torch.rand(2, 4, 6, 6), torch.rand(1, 4, 6, 6)
    gram_target = gram_matrix(target)[0]
    assert torch.equal(GramLoss(gram_target)(features), gram_loss(gram_matrix(features), gram_target))
    assert torch.equal(ContentLoss(target)(features), content_loss(features, target))
    assert torch.equal(TotalVariationLoss()(features), total_variation(features))


@pytest.mark.parametrize(
    "loss",
    [
        lambda x, t: gram_loss(gram_matrix(x), gram_matrix(t)[0]),
        lambda x, t: content_loss(x, t),
        lambda x, t: total_variation(x),
    ],
    ids=["gram", "content", "tv"],
)
def test_gradcheck_in_float64(loss):
    x = torch.rand(2, 3, 5, 4, dtype=torch.float64, requires_grad=True)
    target = torch.rand(1, 3, 5, 4, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda image: loss(image, target), (x,))


def test_bad_shapes_name_the_value():
    with pytest.raises(ValueError, match=r"features must have shape \(B, C, H, W\), got \(4, 4\)"):
        gram_matrix(torch.rand(4, 4))
    with pytest.raises(ValueError, match=r"do not match target \(1, 2, 4, 4\)"):
        content_loss(torch.rand(1, 3, 4, 4), torch.rand(1, 2, 4, 4))
    with pytest.raises(ValueError, match=r"\(C, C\) Gram matrix"):
        GramLoss(torch.rand(3, 4))


# ------------------------------------------------------------------ a content target per batch item


def test_per_item_content_targets_have_known_values_each_normalized_by_its_own_target():
    dark, bright = torch.full((1, 2, 3, 3), 0.1), torch.full((1, 2, 3, 3), 10.0)
    targets = torch.cat([dark, bright])  # (2, 2, 3, 3)
    # Item 0 matches its own target exactly; item 1 is zero, so its error is 1 whatever its target's scale.
    features = torch.cat([dark, torch.zeros_like(bright)])
    assert content_loss(features, targets).tolist() == pytest.approx([0.0, 1.0])
    # Doubling each item is an error of 1 relative to that item's own target, dark or bright.
    assert content_loss(2 * targets, targets).tolist() == pytest.approx([1.0, 1.0])
    # The same items against one shared target: each is measured against it alone.
    shared = content_loss(features, bright)
    assert shared.tolist() == pytest.approx([content_loss(dark, bright).item(), 1.0])


def test_per_item_content_function_equals_module_and_one_item_alone():
    features, targets = torch.rand(3, 4, 6, 6), torch.rand(3, 4, 6, 6)
    module = ContentLoss(torch.rand(1, 4, 6, 6))
    module.set_target(targets)
    assert torch.equal(module(features), content_loss(features, targets))
    for i in range(3):
        assert torch.allclose(
            content_loss(features, targets)[i], content_loss(features[i : i + 1], targets[i : i + 1])[0]
        )


def test_per_item_content_gradcheck_in_float64():
    x = torch.rand(3, 3, 5, 4, dtype=torch.float64, requires_grad=True)
    targets = torch.rand(3, 3, 5, 4, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda image: content_loss(image, targets), (x,))


def test_per_item_targets_must_match_the_batch():
    with pytest.raises(ValueError, match=r"one per item \(B, C, H, W\)"):
        content_loss(torch.rand(3, 2, 4, 4), torch.rand(2, 2, 4, 4))
    with pytest.raises(ValueError, match=r"does not match"):
        ContentLoss(torch.rand(1, 2, 4, 4)).set_target(torch.rand(2, 3, 4, 4))


def test_a_gram_blend_is_the_weighted_mean_and_reblends_in_place():
    first, second = torch.rand(1, 4, 6, 6), torch.rand(1, 4, 6, 6)
    grams = [gram_matrix(first)[0], gram_matrix(second)[0]]
    loss = GramLoss(grams, [1.0, 3.0])
    assert torch.allclose(loss.target, 0.25 * grams[0] + 0.75 * grams[1])
    loss.set_weights([0.0, 1.0])
    features = torch.rand(2, 4, 6, 6)
    assert torch.equal(loss(features), GramLoss(grams[1])(features))
    with pytest.raises(ValueError, match="must sum to more than 0"):
        loss.set_weights([0.0, 0.0])
