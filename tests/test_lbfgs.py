"""The batched L-BFGS: converges on known problems, keeps batch items independent, stays in [0, 1]."""

from __future__ import annotations

import torch

from texsynth.lbfgs import BatchedLBFGS


def quadratic(x: torch.Tensor, centre: torch.Tensor, curvature: torch.Tensor) -> torch.Tensor:
    """Per-item sum of curvature * (x - centre)², an ill-conditioned bowl; (B,)."""
    return (curvature * (x - centre).pow(2)).flatten(1).sum(dim=1)


def minimize(x0, centre, curvature, steps=60):
    x = x0.clone()
    optimizer = BatchedLBFGS(x)
    for _ in range(steps):
        variable = x.detach().requires_grad_(True)
        loss = quadratic(variable, centre, curvature)
        (gradient,) = torch.autograd.grad(loss.sum(), variable)
        optimizer.update(gradient, loss.detach())
    return x


def problem(batch=3):
    generator = torch.Generator().manual_seed(0)
    centre = 0.2 + 0.6 * torch.rand(batch, 3, 8, 8, generator=generator)
    # Curvatures spanning two orders of magnitude: plain gradient descent would crawl.
    curvature = 10 ** (2 * torch.rand(1, 3, 8, 8, generator=generator))
    x0 = torch.full((batch, 3, 8, 8), 0.5)
    return x0, centre, curvature


def test_converges_on_an_ill_conditioned_quadratic():
    x0, centre, curvature = problem()
    x = minimize(x0, centre, curvature)
    assert (x - centre).abs().max() < 1e-3


def test_batch_items_follow_the_same_path_as_alone():
    x0, centre, curvature = problem(batch=4)
    together = minimize(x0, centre, curvature, steps=20)
    alone = minimize(x0[2:3], centre[2:3], curvature, steps=20)
    assert torch.allclose(together[2:3], alone, atol=1e-6)


def test_stays_in_the_unit_range_when_the_minimum_is_outside():
    x0, centre, curvature = problem()
    x = minimize(x0, centre * 3 - 1, curvature)  # centres in [-0.4, 1.4]
    assert x.min() >= 0 and x.max() <= 1
    inside = ((centre * 3 - 1) > 0) & ((centre * 3 - 1) < 1)
    assert torch.allclose(x[inside], (centre * 3 - 1)[inside], atol=1e-3)


def test_works_on_a_channels_last_variable():
    x0, centre, curvature = problem()
    x = minimize(x0.contiguous(memory_format=torch.channels_last), centre, curvature)
    assert (x - centre).abs().max() < 1e-3
