"""texsynth.losses.sorting: the same answers as torch.sort, on the fast path and off it."""

from __future__ import annotations

import pytest
import torch

from texsynth.losses import SlicedWassersteinLoss, sliced, sorting


def with_ties(*shape: int, seed: int = 0) -> torch.Tensor:
    """Float32 values on a coarse grid (many exact ties, as ReLU features give), plus infinities."""
    generator = torch.Generator().manual_seed(seed)
    values = torch.randint(-40, 40, shape, generator=generator).float() / 8
    values.view(-1)[:3] = torch.tensor([float("inf"), float("-inf"), 0.0])
    return values


@pytest.mark.parametrize("threads", [1, 3])
def test_values_and_stable_indices_match_torch_sort(threads):
    # 7 rows of 9000: past the fast path's threshold, rows split unevenly across threads.
    values = with_ties(7, 9000)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        assert sorting._numpy_path(values)
        expected = values.sort(dim=-1, stable=True)
        assert torch.equal(sorting.sort_values(values), expected.values)
        assert torch.equal(sorting.argsort(values), expected.indices)
    finally:
        torch.set_num_threads(previous)


def test_leading_dimensions_and_the_input_are_kept():
    values = with_ties(2, 3, 4000, seed=1)
    before = values.clone()
    assert torch.equal(sorting.argsort(values), values.sort(dim=-1, stable=True).indices)
    assert torch.equal(sorting.sort_values(values), values.sort(dim=-1).values)
    assert torch.equal(values, before)


def test_the_gradient_reaches_each_value_where_it_was():
    values = torch.randn(4, 8192, generator=torch.Generator().manual_seed(2))
    weights = torch.randn(4, 8192, generator=torch.Generator().manual_seed(3))
    ours, theirs = values.clone().requires_grad_(True), values.clone().requires_grad_(True)
    (sorting.sort_with_gradient(ours) * weights).sum().backward()
    (theirs.sort(dim=-1).values * weights).sum().backward()
    assert torch.equal(ours.grad, theirs.grad)


@pytest.mark.parametrize("values", [torch.randn(3, 10), torch.randn(4, 8192, dtype=torch.float64)])
def test_small_or_non_float32_inputs_use_torch_sort(values):
    assert not sorting._numpy_path(values)
    assert torch.equal(sorting.argsort(values), values.sort(dim=-1, stable=True).indices)
    assert torch.equal(sorting.sort_values(values), values.sort(dim=-1).values)


def test_the_sliced_wasserstein_loss_is_unchanged(monkeypatch):
    # Big enough for the fast path at every sort (8 projections x 4096 positions).
    generator = torch.Generator().manual_seed(4)
    style = torch.randn(1, 8, 80, 80, generator=generator)
    image = torch.randn(1, 8, 64, 64, generator=generator)

    def value_and_gradient() -> tuple[torch.Tensor, torch.Tensor]:
        leaf = image.clone().requires_grad_(True)
        loss = SlicedWassersteinLoss(style, seed=5)(leaf)
        loss.sum().backward()
        return loss.detach(), leaf.grad

    ours = value_and_gradient()
    monkeypatch.setattr(sliced, "sort_values", lambda v: v.sort(dim=-1).values)
    monkeypatch.setattr(sliced, "sort_with_gradient", lambda v: v.sort(dim=-1).values)
    theirs = value_and_gradient()
    assert torch.equal(ours[0], theirs[0])
    assert torch.equal(ours[1], theirs[1])
