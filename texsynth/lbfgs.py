"""L-BFGS for a batch of independent images, on the device, without host syncs.

Limited-memory BFGS (Nocedal, "Updating quasi-Newton matrices with limited
storage", 1980; the two-loop recursion of Nocedal & Wright, Algorithm 7.4)
where every batch item keeps its own history, step scale and restarts, so a
tile optimized in a batch of 16 follows the same path as alone. It differs
from ``torch.optim.LBFGS`` in ways that matter here:

- a first step of a fixed size in pixels, which leaves a faint-noise start quickly;
- one objective evaluation per step (fixed unit step, no line search) and no
  ``float(loss)`` or tolerance checks, so nothing waits for the GPU;
- the history stores the step actually taken after clamping to [0, 1], so the
  curvature pairs stay true to the projected iterates;
- an item whose loss rises drops its history and restarts from a scaled
  gradient step, which keeps the fixed step from running away;
- the variable keeps any memory format (channels_last included).

Every loop runs over all ``history`` slots, unused ones weighted zero, so a
step is the same sequence of kernels every time (CUDA-graph friendly).
"""

from __future__ import annotations

import torch
from torch import Tensor

#: Curvature pairs with s·y at or below this are skipped: they would make the
#: inverse-Hessian estimate indefinite.
_MIN_CURVATURE = 1e-10
#: An item whose loss grows by more than this factor in one step restarts its
#: history. Small rises are normal for fixed-step L-BFGS and harmless (restarting
#: on every rise cost 10-20% in final loss on Starry Night at 128 px); a large one
#: means the curvature model is stale.
RESTART_RISE = 1.5
#: Root-mean-square pixel change of the first step (pixels are in [0, 1]).
FIRST_STEP_RMS = 0.05


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """Per-item dot product of (B, ...) tensors -> (B,).

    On the CPU each item is reduced alone: a batched reduction splits the work
    across threads differently than a single one, which changes the rounding,
    and a tile must come out bit-identical in any batch.
    """
    if a.device.type == "cpu":
        return torch.stack([torch.dot(a[i].flatten(), b[i].flatten()) for i in range(a.shape[0])])
    return (a * b).flatten(1).sum(dim=1)


def _per_item(values: Tensor, like: Tensor) -> Tensor:
    """(B,) -> (B, 1, 1, ...) to broadcast against ``like``."""
    return values.view(-1, *([1] * (like.dim() - 1)))


class BatchedLBFGS:
    """Minimize per-item losses of a (B, ...) variable; call :meth:`update` once per evaluation."""

    def __init__(self, variable: Tensor, *, learning_rate: float = 1.0, history: int = 50) -> None:
        self.variable = variable
        self.learning_rate = learning_rate
        self.history = history
        batch = variable.shape[0]
        self._s = torch.zeros((history, *variable.shape), device=variable.device, dtype=variable.dtype)
        self._y = torch.zeros_like(self._s)
        self._rho = torch.zeros((history, batch), device=variable.device, dtype=variable.dtype)
        self._gamma = torch.ones(batch, device=variable.device, dtype=variable.dtype)
        self._alpha = torch.zeros_like(self._rho)
        self._previous: tuple[Tensor, Tensor, Tensor] | None = None  # x, gradient, loss
        self._next_slot = 0

    @torch.no_grad()
    def update(self, gradient: Tensor, loss: Tensor) -> None:
        """Take one step from the current variable, given its gradient and per-item loss (B,)."""
        x = self.variable
        # Pixels held at 0 or 1 by a gradient pushing outwards cannot move: leaving
        # their gradient in would bend every later step towards a wall (the naive
        # projection missed interior minima by ~0.05 on a test quadratic).
        free = ~(((x <= 0) & (gradient > 0)) | ((x >= 1) & (gradient < 0)))
        if self._previous is None:
            # First step: a gradient step of a fixed size in pixel units. torch's rule
            # (at most 1 in L1) barely moves a faint-noise start, whose Grams sit on a
            # plateau near zero: L-BFGS then crawled for 15-60 steps before taking off.
            rms = (_dot(gradient, gradient) / gradient[0].numel()).sqrt().clamp_min(1e-12)
            direction = -gradient * _per_item(FIRST_STEP_RMS / rms, gradient)
        else:
            self._remember(x, gradient, loss, free)
            direction = self._direction(gradient * free)
        self._previous = (x.detach().clone(), gradient.detach().clone(), loss.detach().clone())
        x.add_(direction * free, alpha=self.learning_rate).clamp_(0, 1)

    def _remember(self, x: Tensor, gradient: Tensor, loss: Tensor, free: Tensor) -> None:
        x_before, gradient_before, loss_before = self._previous  # type: ignore[misc]
        # Curvature is learned on the free pixels only, so pinned ones add nothing false.
        s = (x - x_before) * free
        y = (gradient - gradient_before) * free
        sy = _dot(s, y)
        useful = sy > _MIN_CURVATURE
        slot = self._next_slot
        self._next_slot = (slot + 1) % self.history
        self._s[slot] = s
        self._y[slot] = y
        self._rho[slot] = torch.where(useful, 1.0 / sy.clamp_min(_MIN_CURVATURE), torch.zeros_like(sy))
        self._gamma = torch.where(useful, sy / _dot(y, y).clamp_min(1e-30), self._gamma)
        # A large rise means the quadratic model misled this item: forget its history.
        rose = loss > RESTART_RISE * loss_before
        self._rho.mul_((~rose).to(self._rho.dtype))

    def _direction(self, gradient: Tensor) -> Tensor:
        """-H·g by the two-loop recursion, newest pair first, per batch item."""
        order = [(self._next_slot - 1 - i) % self.history for i in range(self.history)]  # newest first
        q = gradient.clone()
        for slot in order:
            self._alpha[slot] = self._rho[slot] * _dot(self._s[slot], q)
            q.sub_(self._y[slot] * _per_item(self._alpha[slot], q))
        r = q * _per_item(self._gamma, q)
        for slot in reversed(order):
            beta = self._rho[slot] * _dot(self._y[slot], r)
            r.add_(self._s[slot] * _per_item(self._alpha[slot] - beta, r))
        return r.neg_()
