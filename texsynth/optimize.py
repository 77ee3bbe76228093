"""The optimization loop: the image is the only variable, kept in [0, 1].

No printing and no files here: progress goes to a callback as a small
:class:`Progress` record holding tensors, so the caller decides when to pay
for ``.item()`` (a GPU sync). Ctrl-C ends the loop cleanly and returns the
best image seen so far.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor

from .lbfgs import BatchedLBFGS
from .recipe import DEFAULT_LEARNING_RATES, Optimizer

Objective = Callable[[Tensor], Mapping[str, Tensor]]


@dataclass(frozen=True)
class Progress:
    """One finished step. ``losses`` are the named terms per batch item, (B,), still on the device.

    ``image`` is the current image batch (B, 3, H, W) on the device, after the
    step; it is updated in place by the next step, so copy it to keep it.
    """

    step: int
    steps: int
    losses: Mapping[str, Tensor]
    elapsed: float
    image: Tensor | None = None
    #: Which scale of a coarse-to-fine pyramid this step belongs to (0 = coarsest).
    scale: int = 0
    scales: int = 1

    def values(self) -> dict[str, float]:
        """Loss terms as floats (the batch mean): a sync point, call it only when reporting."""
        values = {name: float(loss.detach().mean()) for name, loss in self.losses.items()}
        values["total"] = sum(values.values())
        return values


@dataclass(frozen=True)
class Result:
    image: Tensor  # (B, 3, H, W) in [0, 1]
    losses: Mapping[str, Tensor]  # named terms at the returned image, (B,)
    steps: int  # steps completed
    interrupted: bool
    seconds: float


class Strategy(Protocol):
    """Moves the variable one step, given its gradient and per-item loss (B,), keeping it in [0, 1]."""

    def update(self, gradient: Tensor, loss: Tensor) -> None: ...


class _LBFGS:
    def __init__(self, variable: Tensor, learning_rate: float) -> None:
        self._lbfgs = BatchedLBFGS(variable, learning_rate=learning_rate)

    def update(self, gradient: Tensor, loss: Tensor) -> None:
        self._lbfgs.update(gradient, loss)


class _Adam:
    def __init__(self, variable: Tensor, learning_rate: float) -> None:
        self._variable = variable
        self._adam = torch.optim.Adam([variable], lr=learning_rate)

    @torch.no_grad()
    def update(self, gradient: Tensor, loss: Tensor) -> None:
        self._variable.grad = gradient
        self._adam.step()
        self._variable.clamp_(0, 1)


STRATEGIES: dict[Optimizer, Callable[[Tensor, float], Strategy]] = {
    Optimizer.LBFGS: _LBFGS,
    Optimizer.ADAM: _Adam,
}


class _Best:
    """The lowest-loss image seen so far, per batch item, tracked on the device without syncing."""

    def __init__(self, image: Tensor) -> None:
        self.image = image.detach().clone()
        self.loss = torch.full((image.shape[0],), math.inf, device=image.device)
        self.losses: dict[str, Tensor] = {}

    def offer(self, image: Tensor, total: Tensor, losses: Mapping[str, Tensor]) -> None:
        better = total.detach() < self.loss  # (B,)
        self.loss = torch.where(better, total.detach(), self.loss)
        self.image = torch.where(better.view(-1, 1, 1, 1), image.detach(), self.image)
        self.losses = {
            name: torch.where(better, value.detach(), self.losses[name]) if name in self.losses else value.detach()
            for name, value in losses.items()
        }


def evaluate(objective: Objective, image: Tensor) -> tuple[dict[str, Tensor], Tensor]:
    """Named loss terms and their per-item total (B,)."""
    losses = dict(objective(image))
    return losses, torch.stack(list(losses.values())).sum(dim=0)


def optimize(
    image: Tensor,
    objective: Objective,
    *,
    steps: int,
    optimizer: Optimizer = Optimizer.LBFGS,
    learning_rate: float | None = None,
    on_step: Callable[[Progress], None] | None = None,
) -> Result:
    """Minimize ``objective`` over the pixels of ``image`` (B, 3, H, W) for ``steps`` steps.

    ``objective`` maps an image batch to named loss terms, each (B,); batch
    items are optimized independently. Each step costs one evaluation. Returns
    the best image seen (lowest total loss per batch item).
    """
    optimizer = Optimizer(optimizer)
    # 1. The image is the only variable; the network's weights are frozen elsewhere.
    variable = image.detach().clone().clamp_(0, 1).requires_grad_(True)
    strategy = STRATEGIES[optimizer](variable, learning_rate or DEFAULT_LEARNING_RATES[optimizer])
    best = _Best(variable)
    start = time.perf_counter()
    done = 0
    interrupted = False
    try:
        for step in range(1, steps + 1):
            # 2. Evaluate every term and its gradient; remember the best image.
            losses, total = evaluate(objective, variable)
            (gradient,) = torch.autograd.grad(total.sum(), variable)
            best.offer(variable, total, losses)
            # 3. One optimizer step, which keeps the pixels in [0, 1].
            strategy.update(gradient, total.detach())
            done = step
            if on_step is not None:
                detached = {name: value.detach() for name, value in losses.items()}
                on_step(Progress(step, steps, detached, time.perf_counter() - start, variable.detach()))
        # 4. Score the final iterate too, so it can win.
        with torch.no_grad():
            losses, total = evaluate(objective, variable)
            best.offer(variable, total, losses)
    except KeyboardInterrupt:
        interrupted = True
    return Result(
        image=best.image,
        losses=best.losses,
        steps=done,
        interrupted=interrupted,
        seconds=time.perf_counter() - start,
    )
