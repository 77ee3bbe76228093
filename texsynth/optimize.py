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

from .recipe import DEFAULT_LEARNING_RATES, Optimizer

Objective = Callable[[Tensor], Mapping[str, Tensor]]


@dataclass(frozen=True)
class Progress:
    """One finished step. ``losses`` are the named terms per batch item, (B,), still on the device."""

    step: int
    steps: int
    losses: Mapping[str, Tensor]
    elapsed: float
    #: The current clamped image batch (B, 3, H, W) on the device; the loop keeps
    #: changing it, so copy it if you keep it past the callback.
    image: Tensor | None = None

    def values(self) -> dict[str, float]:
        """Loss terms as floats (the batch mean): a sync point, call it only when reporting."""
        values = {name: float(loss.detach().mean()) for name, loss in self.losses.items()}
        values["total"] = sum(values.values())
        return values


@dataclass(frozen=True)
class Result:
    image: Tensor  # (B, 3, H, W) in [0, 1]
    losses: Mapping[str, Tensor]  # final named terms, (B,)
    steps: int  # steps completed
    interrupted: bool
    seconds: float


class Stepper(Protocol):
    def zero_grad(self) -> None: ...

    def step(self, closure: Callable[[], Tensor]) -> object: ...


def _lbfgs(variable: Tensor, learning_rate: float) -> Stepper:
    # One iteration per step() call so the loop can clamp and report between
    # iterations; the history lives in the optimizer's state across calls.
    # A fixed step (no line search) costs one evaluation per iteration, and the
    # tolerances are off because relative losses have small gradients that
    # would otherwise stop the optimizer early.
    return torch.optim.LBFGS(
        [variable], lr=learning_rate, max_iter=1, history_size=50, tolerance_grad=0.0, tolerance_change=0.0
    )


def _adam(variable: Tensor, learning_rate: float) -> Stepper:
    return torch.optim.Adam([variable], lr=learning_rate)


STRATEGIES: dict[Optimizer, Callable[[Tensor, float], Stepper]] = {
    Optimizer.LBFGS: _lbfgs,
    Optimizer.ADAM: _adam,
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

    ``objective`` maps an image batch to named loss terms, each (B,). Returns the
    best image seen (lowest total loss per batch item).
    """
    optimizer = Optimizer(optimizer)
    # 1. The image is the only variable; the network's weights are frozen elsewhere.
    # It stays contiguous: L-BFGS flattens gradients with view(), which fails on other layouts.
    variable = image.detach().clone(memory_format=torch.contiguous_format).clamp_(0, 1).requires_grad_(True)
    stepper = STRATEGIES[optimizer](variable, learning_rate or DEFAULT_LEARNING_RATES[optimizer])
    best = _Best(variable)
    start = time.perf_counter()
    done = 0
    interrupted = False
    latest: dict[str, Tensor] = {}

    def closure() -> Tensor:
        # 2. Evaluate every term and remember the best image (the one evaluated here).
        stepper.zero_grad()
        losses = dict(objective(variable))
        total = torch.stack(list(losses.values())).sum(dim=0)  # (B,)
        total.sum().backward()
        best.offer(variable, total, losses)
        latest.update(losses)
        return total.sum()

    try:
        for step in range(1, steps + 1):
            # 3. One optimizer iteration, then project back onto valid pixels.
            stepper.step(closure)
            with torch.no_grad():
                variable.clamp_(0, 1)
            done = step
            if on_step is not None:
                on_step(
                    Progress(
                        step,
                        steps,
                        {k: v.detach() for k, v in latest.items()},
                        time.perf_counter() - start,
                        image=variable.detach(),
                    )
                )
        # 4. Score the final iterate too, so it can win.
        with torch.no_grad():
            losses = dict(objective(variable))
            best.offer(variable, torch.stack(list(losses.values())).sum(dim=0), losses)
    except KeyboardInterrupt:
        interrupted = True
    return Result(
        image=best.image.clamp(0, 1),
        losses=best.losses,
        steps=done,
        interrupted=interrupted,
        seconds=time.perf_counter() - start,
    )
