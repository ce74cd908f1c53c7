"""The adapter contract. Adapters know nothing about shifts or models: they see Samples and raw strings."""

from __future__ import annotations

from typing import Protocol

from vittle_bench.registry import Registry
from vittle_bench.schema import Parsed, Request, Sample, SampleResult


class TaskAdapter(Protocol):
    name: str
    max_new_tokens: int

    def build_request(self, sample: Sample) -> Request: ...

    def parse(self, raw: str, sample: Sample) -> Parsed: ...

    def score(self, sample: Sample, parsed: Parsed, raw: str) -> tuple[float | None, float | None]:
        """(score, reference score); the reference score is only set by judged tasks, None = not scored."""
        ...

    def aggregate(self, records: list[SampleResult], seed: int) -> list[tuple[str, float, float | None, float | None, int]]:
        """Per-cell metrics as (metric, value, ci_low, ci_high, n)."""
        ...


TASK_ADAPTERS: Registry[type] = Registry(
    "tasks", ("vittle_bench.tasks.pope", "vittle_bench.tasks.closed_form", "vittle_bench.tasks.open_ended",
              "vittle_bench.tasks.pairwise", "vittle_bench.tasks.yes_no"))
