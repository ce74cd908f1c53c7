"""Writing results.csv (atomically) and the small helpers every writer of a run directory shares."""

from __future__ import annotations

import csv
import os
import platform
from pathlib import Path

from vittle_bench import __version__
from vittle_bench.metrics.base import Metric, lookup
from vittle_bench.metrics.stats import MetricValue
from vittle_bench.schema import RESULT_COLUMNS, CellResult, SampleResult


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.10g}"


def cell_result(record: SampleResult, value: MetricValue, primary: bool) -> CellResult:
    """The results.csv row of one metric of the cell `record` belongs to."""
    return CellResult(record.model, record.task, record.shift, record.shift_kind, record.severity, value.metric,
                      value.value, value.ci_low, value.ci_high, value.n, condition=record.condition, primary=primary,
                      ci_undefined=value.ci_undefined)


def declaration(metric: str) -> Metric:
    """The declaration of a metric about to be written; an undeclared one is a bug of the adapter reporting it."""
    found = lookup(metric)
    if found is None:
        raise ValueError(f"metric {metric!r} is not declared: declare it in the reporting adapter's `metrics` "
                         "(see docs/plugins.md)")
    return found


def write_results(path: Path, cells: list[CellResult]) -> None:
    """results.csv, atomically: numbers as they are reported (rates in percent), each with its metric's unit
    and direction from the declaration."""
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(RESULT_COLUMNS)
        for c in cells:
            metric = declaration(c.metric)
            direction = "" if metric.higher_is_better is None else str(metric.higher_is_better).lower()
            writer.writerow([c.model, c.task, c.shift, c.shift_kind, c.severity, c.metric, _number(c.value),
                             _number(c.ci_low), _number(c.ci_high), c.n, c.condition, metric.unit, direction,
                             str(c.primary).lower(), c.ci_undefined])
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def run_versions() -> dict[str, str]:
    import torch
    import transformers

    return {"vittle_bench": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__}
