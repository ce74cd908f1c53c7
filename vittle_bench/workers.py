"""Who am I in a multi-process run? One process by default; under `accelerate launch` (or torchrun) the
launcher's process group, read through accelerate's PartialState — no home-made distributed code."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class WorkerGroup:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str | None = None
    barrier: Callable[[], None] | None = None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wait(self) -> None:
        if self.barrier is not None:
            self.barrier()

    def share(self, value: T) -> T:
        """Rank 0's `value` on every rank, so that all ranks act on one decision (e.g. whether the run
        directory is theirs); every rank must call it."""
        if self.world_size == 1:
            return value
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([value], from_process=0)[0]

    def model_args(self, args: dict[str, Any]) -> dict[str, Any]:
        """Place each process's model on its own accelerator unless the user chose a placement."""
        if self.device is None or "device" in args or "device_map" in args:
            return args
        return {**args, "device": self.device}

    @classmethod
    def current(cls) -> WorkerGroup:
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:  # set for every process by accelerate launch / torchrun
            return cls()
        import torch
        from accelerate import PartialState

        # Without a GPU, accelerate only forms a (gloo) process group when told to use the CPU.
        state = PartialState(cpu=not torch.cuda.is_available())
        device = str(state.device) if state.device.type != "cpu" else None
        return cls(state.process_index, state.num_processes, state.local_process_index, device, state.wait_for_everyone)
