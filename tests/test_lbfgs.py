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


def two_loop_direction(pairs: list[tuple[torch.Tensor, torch.Tensor]], gamma: float, g: torch.Tensor) -> torch.Tensor:
    """-H·g by the textbook two-loop recursion (Nocedal & Wright, Algorithm 7.4), in float64."""
    q, alphas = g.double().clone(), []
    for s, y in reversed(pairs):  # newest first
        rho = 1 / torch.dot(s, y)
        alphas.append(rho * torch.dot(s, q))
        q -= alphas[-1] * y
    r = gamma * q
    for (s, y), alpha in zip(pairs, reversed(alphas)):  # oldest first
        beta = torch.dot(y, r) / torch.dot(s, y)
        r += s * (alpha - beta)
    return -r


def test_compact_direction_equals_the_two_loop_recursion():
    x0, centre, curvature = problem(batch=2)
    x = x0.clone()
    optimizer = BatchedLBFGS(x, history=5)  # 12 steps: the ring buffer wraps around
    for _ in range(12):
        variable = x.detach().requires_grad_(True)
        loss = quadratic(variable, centre, curvature)
        (gradient,) = torch.autograd.grad(loss.sum(), variable)
        optimizer.update(gradient, loss.detach())
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(1))
    direction = optimizer._direction(g)
    for item in range(2):
        order = optimizer._chronological[int(optimizer._slot)].tolist()
        pairs = [
            (optimizer._s[item, slot].double(), optimizer._y[item, slot].double())
            for slot in order
            if optimizer._usable[item, slot]
        ]
        assert len(pairs) == 5
        expected = two_loop_direction(pairs, float(optimizer._gamma[item]), g[item].flatten())
        assert torch.allclose(direction[item].flatten().double(), expected, rtol=1e-4, atol=1e-7)


def test_unusable_pairs_are_left_out_of_the_direction():
    x0, centre, curvature = problem(batch=1)
    x = x0.clone()
    optimizer = BatchedLBFGS(x, history=4)
    for _ in range(6):
        variable = x.detach().requires_grad_(True)
        loss = quadratic(variable, centre, curvature)
        (gradient,) = torch.autograd.grad(loss.sum(), variable)
        optimizer.update(gradient, loss.detach())
    order = optimizer._chronological[int(optimizer._slot)].tolist()
    dropped = order[1]
    optimizer._usable[0, dropped] = False  # as a restart or a failed curvature check would
    g = torch.randn(x.shape, generator=torch.Generator().manual_seed(2))
    pairs = [(optimizer._s[0, slot].double(), optimizer._y[0, slot].double()) for slot in order if slot != dropped]
    expected = two_loop_direction(pairs, float(optimizer._gamma[0]), g[0].flatten())
    assert torch.allclose(optimizer._direction(g)[0].flatten().double(), expected, rtol=1e-4, atol=1e-7)
