"""Run-level metrics: computed once, after the grid, from the records of many cells (EMI fits one estimator
on every open-ended cell of a run). `run --metrics NAME` selects them; plugins register under the entry-point
group `vittle_bench.run_metrics`.

A run-level metric is checked before any model loads (`check`), reads the cells it declares (`reads`) as the
runner merges them, one cell at a time (`collect`), and at the end returns its rows for results.csv and its
entry for manifest.json, under its registry name (`finish`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vittle_bench.adapters import TaskAdapter
from vittle_bench.registry import Registry
from vittle_bench.schema import CellResult, Sample, SampleResult
from vittle_bench.shifts import ShiftCondition


@dataclass(frozen=True)
class RunContext:
    """What a run-level metric knows of its run: the seed, the cache directory (None when caching is off), the
    run directory, and the run's options by name (a metric reads its own, e.g. `emi_encoders`)."""

    seed: int
    cache_dir: Path | None
    output: Path
    options: Mapping[str, Any]


class RunMetric:
    """Base class: reads no cell and adds nothing until a subclass says otherwise."""

    def __init__(self, context: RunContext) -> None:
        self.context = context

    def check(self) -> None:
        """Raise ConfigError for a setting that would fail only after the generation (e.g. a missing file)."""

    def reads(self, adapter: TaskAdapter) -> bool:
        """Whether the cells scored by `adapter` are collected."""
        return False

    def collect(self, model: str, task: str, condition: ShiftCondition, records: Sequence[SampleResult],
                rows: Sequence[Sample]) -> None:
        """One cell's records, and the unshifted rows the cell was built from (a domain's swapped-in rows)."""

    def finish(self, conditions: Sequence[ShiftCondition]) -> tuple[list[CellResult], dict[str, Any]]:
        """The metric's rows for results.csv and its manifest.json entry."""
        return [], {}


RUN_METRICS: Registry[type[RunMetric]] = Registry("run_metrics", ("vittle_bench.run_metrics.emi",))

__all__ = ["RUN_METRICS", "RunContext", "RunMetric"]
