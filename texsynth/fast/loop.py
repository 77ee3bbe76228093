"""The training loop's bookkeeping: reports, the training record, checkpoints, resuming, stopping cleanly.

What one iteration does is the caller's (``train.py``); this module runs the
iterations, reports each, writes the model and a checkpoint atomically every
``checkpoint_every`` iterations and at the end, stops on a NaN or infinite
loss keeping the last good checkpoint, and turns Ctrl-C or SIGTERM into a
clean stop after the iteration in hand.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .. import interrupts
from .._version import __version__
from ..errors import TexsynthError, located
from ..io import sha256
from .model_file import MODEL_FORMAT_VERSION, FastModel, load_checkpoint, save_checkpoint, save_model

#: Loss values kept in a model's training record (one every iterations/HISTORY_POINTS).
HISTORY_POINTS = 100
#: Options a resumed run must share with its checkpoint to go on as if it had never stopped.
RESUME_MUST_MATCH = ("batch_size", "size", "learning_rate", "seed", "checkpoint_every")


@dataclass(frozen=True)
class TrainingReport:
    """One finished iteration. ``losses`` are the loss terms' batch means, still on the device."""

    iteration: int
    iterations: int
    losses: Mapping[str, Tensor]
    elapsed: float
    #: The iteration this run started after (0, or where it resumed).
    resumed_from: int = 0

    def values(self) -> dict[str, float]:
        """Loss terms as floats: a sync point, call it only when reporting."""
        values = {name: float(loss.detach()) for name, loss in self.losses.items()}
        values["total"] = sum(values.values())
        return values


@dataclass(frozen=True)
class Trained:
    """What a training run made: the model as written, and how the run went."""

    path: Path
    model: FastModel
    iterations: int  # done, over all runs of this training
    interrupted: bool
    seconds: float  # this run's
    resumed_from: int = 0
    checkpoint: Path | None = None


@dataclass
class Record:
    """What a model file says about its training: options, time, device, the loss every so often."""

    options: dict[str, Any]
    device: str
    seconds: float = 0.0
    iterations: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    #: Anything else worth keeping (the photos a transfer network saw, ...).
    notes: dict[str, Any] = field(default_factory=dict)

    def add(self, iteration: int, values: Mapping[str, float]) -> None:
        self.history.append({"iteration": iteration, **{k: round(v, 6) for k, v in values.items()}})

    def data(self) -> dict[str, Any]:
        return {
            "options": self.options,
            "device": self.device,
            "seconds": round(self.seconds, 3),
            "iterations": self.iterations,
            "history": self.history,
            **self.notes,
            "texsynth": __version__,
            "torch": torch.__version__,
        }


def resume_from(
    path: Path,
    network: nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    identity: Mapping[str, Any],
    options: Mapping[str, Any],
    source: str,
) -> tuple[int, Record]:
    """Load the checkpoint ``path`` into the network and optimizer: the iteration it stopped at, the record so far."""
    if not path.exists():
        raise TexsynthError(f"{path}: resume: no checkpoint to resume from (train without --resume first)")
    checkpoint = load_checkpoint(path)
    state = checkpoint.state
    if state.get("identity") != identity:
        raise TexsynthError(
            located(source, "resume", f"{path} is a checkpoint of another recipe or network; choose another output")
        )
    saved: dict[str, Any] = state["options"] if isinstance(state.get("options"), dict) else {}
    for name in RESUME_MUST_MATCH:
        if saved.get(name) != options.get(name):
            raise TexsynthError(
                located(
                    source, "resume", f"{path} was trained with {name} {saved.get(name)!r}, not {options.get(name)!r}"
                )
            )
    network.load_state_dict(checkpoint.model.network.state_dict())
    try:
        optimizer.load_state_dict(checkpoint.optimizer_state)
    except (ValueError, KeyError, RuntimeError) as error:
        raise TexsynthError(f"{path}: resume: the optimizer state does not fit ({error})") from None
    iteration = state.get("iteration")
    if type(iteration) is not int or iteration < 0:
        raise TexsynthError(f"{path}: resume: the checkpoint's iteration must be a whole number, got {iteration!r}")
    if iteration >= options["iterations"]:
        raise TexsynthError(
            f"{path}: resume: the checkpoint has done {iteration} iterations already; ask for more with --iterations"
        )
    record = Record(
        options={**saved, "iterations": options["iterations"]},
        device=str(state.get("device", "")),
        seconds=float(state.get("seconds", 0.0)),
        iterations=iteration,
        history=list(state.get("history", [])),
        notes=dict(state.get("notes", {})),
    )
    return iteration, record


def run_iterations(
    step: Callable[[int], dict[str, Tensor]],
    *,
    start: int,
    iterations: int,
    checkpoint_every: int,
    model: FastModel,
    optimizer: torch.optim.Optimizer,
    record: Record,
    identity: Mapping[str, Any],
    output: Path,
    checkpoint_file: Path,
    on_iteration: Callable[[TrainingReport], None] | None,
) -> Trained:
    """Run ``step(i)`` for i = start+1 .. iterations, with reports, checkpoints, NaN checks and clean stops."""
    history_every = max(1, iterations // HISTORY_POINTS)
    began = time.perf_counter()
    seconds_before = record.seconds
    written: Path | None = None

    def write(done: int) -> Path:
        record.iterations, record.seconds = done, seconds_before + time.perf_counter() - began
        final = replace(model, training=record.data())
        save_model(output, final)
        state = {
            "identity": identity,
            "iteration": done,
            "options": record.options,
            "device": record.device,
            "seconds": record.seconds,
            "history": record.history,
            "notes": record.notes,
        }
        return save_checkpoint(checkpoint_file, final, optimizer, state)

    done = start
    with _stop_requests() as stop:
        for iteration in range(start + 1, iterations + 1):
            losses = step(iteration)
            if not bool(torch.isfinite(torch.stack(list(losses.values())).sum())):
                kept = f"kept the last good checkpoint {written} (iteration {done})" if written else "wrote nothing"
                raise TexsynthError(
                    f"training: the loss became NaN or infinite at iteration {iteration} "
                    f"(try a lower --learning-rate); {kept}"
                )
            done = iteration
            if iteration % history_every == 0 or iteration == iterations:
                record.add(iteration, {name: float(value) for name, value in losses.items()})
            if on_iteration is not None:
                on_iteration(TrainingReport(iteration, iterations, losses, time.perf_counter() - began, start))
            if iteration % checkpoint_every == 0 or iteration == iterations or stop.requested:
                written = write(done)
            if stop.requested:
                break
    return Trained(
        path=output,
        model=replace(
            model,
            training=record.data(),
            path=output,
            sha256=sha256(output),
            format_version=MODEL_FORMAT_VERSION,
        ),
        iterations=done,
        interrupted=done < iterations,
        seconds=time.perf_counter() - began,
        resumed_from=start,
        checkpoint=written,
    )


class _StopRequest:
    requested = False


@contextlib.contextmanager
def _stop_requests() -> Iterator[_StopRequest]:
    """Ctrl-C, SIGTERM and SIGHUP ask the loop to stop after the iteration in hand (a second Ctrl-C stops at once).

    Stopping between iterations keeps the weights and the optimizer's state
    consistent, so the model written then is usable and the checkpoint resumable.
    """
    request = _StopRequest()

    def ask(signum: int, frame: Any) -> None:
        if request.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        interrupts.remember(signum)
        request.requested = True

    with interrupts.handling({number: ask for number in interrupts.SIGNALS}):
        yield request
