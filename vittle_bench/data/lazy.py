"""Memory-bounded sample sequences: rows stay light, and a Sample (with its decoded image) is built only
when the runner reaches it, so a 10,000-image split never sits in RAM at once."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from vittle_bench.schema import Sample


class LazySamples(Sequence):
    """A sequence of rows mapped to Samples on access. A row that fails to map becomes a Sample with
    `load_error` set (the runner records and counts it) instead of stopping the run."""

    def __init__(self, task: str, rows: Sequence[Any], to_sample: Callable[[Any], Sample],
                 row_id: Callable[[int, Any], str] = lambda i, row: str(i)) -> None:
        self.task, self.rows, self.to_sample, self.row_id = task, rows, to_sample, row_id

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return LazySamples(self.task, self.rows[index], self.to_sample, self.row_id)
        row = self.rows[index]
        try:
            return self.to_sample(row)
        except Exception as exc:  # noqa: BLE001 - one bad row must not stop a run
            return Sample(task=self.task, sample_id=self.row_id(index, row), question="",
                          load_error=f"{type(exc).__name__}: {exc}")


class MappedSamples(Sequence):
    """`fn` applied to each Sample of `samples` on access (slices stay lazy): e.g. a task's answer
    normalisation over a hub split that is never held in memory."""

    def __init__(self, samples: Sequence[Sample], fn: Callable[[Sample], Sample]) -> None:
        self.samples, self.fn = samples, fn

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return MappedSamples(self.samples[index], self.fn)
        return self.fn(self.samples[index])
