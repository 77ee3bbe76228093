"""Many processes, one job: torchrun's environment as a :class:`Shard` of work, and meeting at the end.

Under torchrun (``WORLD_SIZE`` > 1) a process joins the job's gloo process
group, takes the indices ``i`` with ``i % world == rank`` and, on a GPU
machine, the GPU of its ``LOCAL_RANK``. Work is exchanged through a shared
folder, never through the group: processes only meet at the end, so a slow
one delays nothing but the final summary. Batches of tiles use this; so can
anything else that splits numbered items across processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .errors import TexsynthError
from .interrupts import blocking_native_call


@dataclass(frozen=True)
class Shard:
    """This process's share of numbered items under torchrun (rank of world); one process by default."""

    rank: int = 0
    world: int = 1

    def indices(self, count: int) -> list[int]:
        return [index for index in range(count) if index % self.world == self.rank]


def join_torchrun() -> Shard:
    """This process's shard: from torchrun's environment (joining its process group), else the whole job.

    The group only synchronizes the end of the run (gloo works on CPU and GPU machines alike).
    """
    world = _environment_int("WORLD_SIZE", 1)
    if world <= 1:
        return Shard()
    for name in ("RANK", "MASTER_ADDR", "MASTER_PORT"):
        if name not in os.environ:
            raise TexsynthError(
                f"WORLD_SIZE is {world} but {name} is not set: start several processes with torchrun, "
                "or unset WORLD_SIZE to run as one"
            )
    rank, port = _environment_int("RANK", 0), _environment_int("MASTER_PORT", 0)
    if not 0 <= rank < world:
        raise TexsynthError(f"RANK: must be from 0 to WORLD_SIZE - 1 ({world - 1}), got {rank}")
    if not 0 < port < 65536:
        raise TexsynthError(f"MASTER_PORT: must be a port number from 1 to 65535, got {port}")
    import torch.distributed as dist

    if not dist.is_initialized():
        try:
            with blocking_native_call():
                dist.init_process_group(backend="gloo")
        except (RuntimeError, ValueError) as error:  # torch's DistError and store errors are RuntimeErrors
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise TexsynthError(
                f"cannot join the torchrun job at {os.environ['MASTER_ADDR']}:{port}: {reason}"
            ) from None
    return Shard(rank=dist.get_rank(), world=dist.get_world_size())


def local_device(shard: Shard) -> str | None:
    """Under torchrun on a GPU machine, each process takes the GPU of its local rank."""
    if shard.world > 1 and torch.cuda.is_available():
        return f"cuda:{_environment_int('LOCAL_RANK', 0) % torch.cuda.device_count()}"
    return None


def wait_for_all(shard: Shard) -> None:
    """Block until every process has finished its share (no-op for one process)."""
    if shard.world > 1:
        import torch.distributed as dist

        with blocking_native_call():
            dist.barrier()


def leave_torchrun(shard: Shard) -> None:
    if shard.world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()


def _environment_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise TexsynthError(f"{name}: must be a whole number (set by torchrun), got {text!r}") from None
