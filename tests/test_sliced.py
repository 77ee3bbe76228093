"""The sliced-Wasserstein loss: known answers, blends, batch independence, function == module, gradcheck."""

from __future__ import annotations

import pytest
import torch

from texsynth.losses import SlicedWassersteinLoss, random_projections, sliced_wasserstein_loss
from texsynth.losses.sliced import apportion, target_quantiles


def directions(channels: int, count: int | None = None, seed: int = 0, dtype=torch.float32) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return random_projections(channels, count or channels, generator=generator, dtype=dtype)


def as_target(features: torch.Tensor) -> torch.Tensor:
    """(1, C, H, W) -> (C, H*W), the function's target layout."""
    return features[0].flatten(1)


def test_zero_for_the_same_feature_set_in_any_order():
    torch.manual_seed(0)
    features = torch.randn(1, 6, 5, 7)
    shuffled = as_target(features)[:, torch.randperm(35)]
    for target in (as_target(features), shuffled):
        assert sliced_wasserstein_loss(features, target, directions(6)).item() < 1e-12


def test_zero_for_a_target_of_another_size_with_the_same_distribution():
    # The same values twice over: 2N target positions, identical quantiles.
    torch.manual_seed(1)
    features = torch.randn(1, 4, 6, 6)
    tiled = as_target(features).repeat(1, 2)
    assert sliced_wasserstein_loss(features, tiled, directions(4)).item() < 1e-12


def test_a_zero_guess_scores_about_one_and_scale_does_not_matter():
    torch.manual_seed(2)
    target = torch.randn(8, 400) + 1.0
    zeros = torch.zeros(1, 8, 20, 20)
    scores = torch.stack([sliced_wasserstein_loss(zeros, target, directions(8, seed=s)) for s in range(50)])
    assert scores.mean().item() == pytest.approx(1.0, abs=0.1)
    guess = torch.randn(1, 8, 20, 20)
    projections = directions(8)
    assert sliced_wasserstein_loss(10 * guess, 10 * target, projections).item() == pytest.approx(
        sliced_wasserstein_loss(guess, target, projections).item(), rel=1e-5
    )


def test_optimization_moves_features_to_the_target_distribution():
    torch.manual_seed(3)
    # A skewed, correlated, shifted target that Gaussian noise does not resemble.
    target = torch.randn(8, 8) @ torch.randn(8, 256).pow(2) / 3 + 1
    features = torch.randn(1, 8, 16, 16, requires_grad=True)
    loss = SlicedWassersteinLoss(target, seed=0)
    probe = directions(8, count=64, seed=99)  # a fixed, wider yardstick the optimizer never sees
    before = sliced_wasserstein_loss(features.detach(), target, probe).item()
    optimizer = torch.optim.Adam([features], lr=0.05)
    for _ in range(150):
        optimizer.zero_grad()
        loss(features).sum().backward()
        optimizer.step()
    after = sliced_wasserstein_loss(features.detach(), target, probe).item()
    assert after < 0.05 * before, (before, after)


def test_function_equals_module():
    torch.manual_seed(4)
    features, style = torch.randn(2, 5, 4, 4), torch.randn(1, 5, 6, 3)
    module = SlicedWassersteinLoss(style, seed=7)
    generator = torch.Generator().manual_seed(7)
    for _ in range(2):  # the module re-draws its directions on each call, from its seeded generator
        expected = sliced_wasserstein_loss(features, as_target(style), random_projections(5, 5, generator=generator))
        assert torch.equal(module(features), expected)


def test_projections_are_redrawn_each_call_and_reproducible_from_the_seed():
    torch.manual_seed(5)
    features, style = torch.randn(1, 6, 4, 4), torch.randn(1, 6, 4, 4)
    first, second = SlicedWassersteinLoss(style, seed=1), SlicedWassersteinLoss(style, seed=1)
    a, b = first(features), first(features)
    assert not torch.equal(a, b)
    assert torch.equal(second(features), a) and torch.equal(second(features), b)
    first.reseed()
    assert torch.equal(first(features), a)


def test_blend_with_a_vanishing_weight_equals_the_single_style():
    torch.manual_seed(6)
    features, one, other = torch.randn(2, 4, 5, 5), torch.randn(1, 4, 6, 6), 3 + torch.randn(1, 4, 3, 3)
    single = SlicedWassersteinLoss(one, seed=0)(features)
    assert torch.equal(SlicedWassersteinLoss([one, other], [1.0, 0.0], seed=0)(features), single)
    nearly = SlicedWassersteinLoss([one, other], [1.0, 1e-6], seed=0)(features)
    assert torch.allclose(nearly, single, rtol=1e-3, atol=1e-6)


def test_a_style_split_into_two_equal_halves_is_the_same_target():
    # Exercises the weighted-quantile path against the plain interpolation of one style.
    torch.manual_seed(7)
    features, target = torch.randn(2, 4, 5, 5), torch.randn(4, 40)
    projections = directions(4)
    whole = sliced_wasserstein_loss(features, target, projections)
    halves = sliced_wasserstein_loss(features, [target[:, :20], target[:, 20:]], projections, [0.5, 0.5])
    assert torch.allclose(halves, whole, rtol=1e-5)


def test_a_blend_target_sits_between_its_styles():
    torch.manual_seed(8)
    low, high = torch.randn(3, 100), torch.randn(3, 100) + 4
    mixture = torch.cat([low[:, :50], high[:, :50]], dim=1).view(1, 3, 10, 10)
    projections = directions(3, count=16)
    blend = sliced_wasserstein_loss(mixture, [low, high], projections, [0.5, 0.5]).item()
    assert blend < 0.05
    assert blend < sliced_wasserstein_loss(mixture, low, projections).item() / 10
    assert blend < sliced_wasserstein_loss(mixture, high, projections).item() / 10


def brute_force_quantiles(atoms: torch.Tensor, count: int) -> torch.Tensor:
    """Bin means of equal-mass ``atoms`` (P, A): each atom repeated ``count`` times, bins of A in a row."""
    ordered = atoms.sort(dim=1).values.double().repeat_interleave(count, dim=1)
    return ordered.view(atoms.shape[0], count, atoms.shape[1]).mean(dim=2)


@pytest.mark.parametrize("positions, count", [(7, 25), (25, 25), (40, 25), (1, 5), (24, 25)])
def test_target_quantiles_of_one_style_are_its_quantile_function_averaged_over_bins(positions, count):
    generator = torch.Generator().manual_seed(positions)
    target, projections = torch.randn(3, positions, generator=generator), directions(3, 5)
    expected = brute_force_quantiles(projections.t() @ target, count)
    assert torch.allclose(target_quantiles([target], [1.0], projections, count).double(), expected, atol=1e-5)


def test_target_quantiles_of_a_blend_weigh_each_style_by_its_share():
    # Shares 0.5/0.5 over 3 and 5 positions: masses 1/6 and 1/10, i.e. 5 and 3 of 30 equal atoms.
    generator = torch.Generator().manual_seed(0)
    first, second = torch.randn(3, 3, generator=generator), torch.randn(3, 5, generator=generator) + 1
    projections = directions(3, 4)
    atoms = torch.cat([(projections.t() @ first).repeat(1, 5), (projections.t() @ second).repeat(1, 3)], dim=1)
    quantiles = target_quantiles([first, second], [0.5, 0.5], projections, 7)
    assert torch.allclose(quantiles.double(), brute_force_quantiles(atoms, 7), atol=1e-5)


def test_shares_are_apportioned_in_whole_positions():
    assert apportion([0.5, 0.5], 25) in ([13, 12], [12, 13])
    assert apportion([0.3, 0.7], 10) == [3, 7]
    assert apportion([1e-6, 1 - 1e-6], 16) == [0, 16]
    assert sum(apportion([0.2, 0.45, 0.35], 1001)) == 1001
    assert sorted(apportion([1 / 3, 1 / 3, 1 / 3], 10)) == [3, 3, 4]


def test_the_module_draws_a_blend_as_a_sample_of_the_mixture():
    # As above, through the module: its targets are a fresh equal-mass sample each call.
    torch.manual_seed(8)
    low, high = torch.randn(3, 100), torch.randn(3, 100) + 4
    mixture = torch.cat([low[:, :50], high[:, :50]], dim=1).view(1, 3, 10, 10)
    blend = SlicedWassersteinLoss([low, high], [0.5, 0.5], projections=16, seed=1)
    values = torch.stack([blend(mixture) for _ in range(20)])
    assert values.max() < 0.1
    assert values.mean() < SlicedWassersteinLoss(low, projections=16)(mixture) / 10
    assert values.mean() < SlicedWassersteinLoss(high, projections=16)(mixture) / 10
    # Exact shares, through the function, agree with the sample on average.
    exact = torch.stack(
        [sliced_wasserstein_loss(mixture, [low, high], directions(3, 16, seed=s), [0.5, 0.5]) for s in range(20)]
    )
    assert values.mean().item() == pytest.approx(exact.mean().item(), abs=0.02)
    # A 30/70 blend draws 30 of 100 positions from the first style.
    skewed = SlicedWassersteinLoss([low, high], [0.3, 0.7], projections=16, seed=1)
    assert skewed._mixture_sample([(30, low), (70, high)], torch.Generator().manual_seed(0)).shape == (3, 100)
    again = SlicedWassersteinLoss([low, high], [0.5, 0.5], projections=16, seed=1)
    assert torch.equal(torch.stack([again(mixture) for _ in range(20)]), values)


def test_a_blend_style_with_too_few_positions_gives_each_equally_often():
    small, large = torch.arange(3.0).view(1, 3), torch.zeros(1, 50)
    sample = SlicedWassersteinLoss._mixture_sample([(7, small), (5, large)], torch.Generator().manual_seed(0))
    counts = torch.bincount(sample[0, :7].long(), minlength=3)
    assert sorted(counts.tolist()) == [2, 2, 3] and sample.shape == (1, 12)


def test_batch_items_are_independent():
    torch.manual_seed(9)
    features = torch.randn(3, 4, 5, 5, requires_grad=True)
    style = torch.randn(1, 4, 7, 7)
    together = SlicedWassersteinLoss(style, seed=2)(features)
    alone = SlicedWassersteinLoss(style, seed=2)(features[1:2])
    assert together.shape == (3,)
    assert torch.allclose(together[1], alone[0], rtol=1e-6)
    (gradient,) = torch.autograd.grad(together[1], features)
    assert gradient[0].abs().max() == 0 and gradient[2].abs().max() == 0 and gradient[1].abs().max() > 0


@pytest.mark.parametrize("blend", [False, True], ids=["single", "blend"])
def test_gradcheck_in_float64(blend):
    torch.manual_seed(10)
    features = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    targets = [torch.randn(3, 13, dtype=torch.float64)]
    weights = None
    if blend:
        targets.append(torch.randn(3, 30, dtype=torch.float64) + 2)
        weights = [0.3, 0.7]
    projections = directions(3, count=5, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: sliced_wasserstein_loss(x, targets, projections, weights), (features,))


def test_targets_are_buffers_subsampled_to_the_cap():
    torch.manual_seed(11)
    style = torch.randn(1, 4, 40, 40)
    module = SlicedWassersteinLoss([style, style[..., :10, :10]], [2, 1], max_positions=500)
    assert [t.shape for t in module.targets] == [(4, 500), (4, 100)]
    assert set(dict(module.named_buffers())) == {"target_0", "target_1", "energy"}
    assert "channels=4, positions=[500, 100], projections=4" in repr(module)
    # A random subset keeps the distribution: the full image scores near zero against it.
    assert SlicedWassersteinLoss(style, max_positions=500)(style).item() < 0.01


def test_bad_inputs_name_the_value():
    features = torch.randn(1, 3, 4, 4)
    with pytest.raises(ValueError, match=r"features must have shape \(B, C, H, W\), got \(3, 4, 4\)"):
        sliced_wasserstein_loss(features[0], features[0].flatten(1), directions(3))
    with pytest.raises(ValueError, match=r"targets\[0\] must have shape \(C=3, M>0\).*got \(2, 16\)"):
        sliced_wasserstein_loss(features, torch.randn(2, 16), directions(3))
    with pytest.raises(ValueError, match=r"projections must have shape \(C=3, P\), got \(4, 4\)"):
        sliced_wasserstein_loss(features, features[0].flatten(1), directions(4))
    with pytest.raises(ValueError, match=r"weights\[1\] must be finite and >= 0, got -1.0"):
        SlicedWassersteinLoss([features, features], [1, -1])
    with pytest.raises(ValueError, match=r"weights has 1 values for 2 targets"):
        SlicedWassersteinLoss([features, features], [1])
    with pytest.raises(ValueError, match=r"same channels, got \[2, 3\]"):
        SlicedWassersteinLoss([features, torch.randn(1, 2, 4, 4)])


def test_autocast_leaves_the_loss_in_float32():
    torch.manual_seed(12)
    features, style = torch.randn(1, 8, 6, 6), torch.randn(1, 8, 6, 6)
    expected = SlicedWassersteinLoss(style, seed=0)(features)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        value = SlicedWassersteinLoss(style, seed=0)(features.bfloat16().float())
    assert value.dtype == torch.float32
    assert torch.allclose(value, SlicedWassersteinLoss(style, seed=0)(features.bfloat16().float()))
    assert torch.allclose(value, expected, rtol=0.05)


def test_reblending_equals_building_with_those_weights():
    generator = torch.Generator().manual_seed(4)
    one, other = torch.rand(1, 6, 8, 8, generator=generator), torch.rand(1, 6, 5, 7, generator=generator) * 3
    features = torch.rand(2, 6, 8, 8, generator=generator)
    for weights in ([0.3, 0.7], [1.0, 0.0], [0.0, 2.0]):
        built = SlicedWassersteinLoss([one, other], weights, seed=9)
        reblended = SlicedWassersteinLoss([one, other], [0.5, 0.5], seed=9)
        reblended.set_weights(weights)
        assert torch.equal(built(features), reblended(features)), weights
        assert torch.equal(built.energy, reblended.energy)
