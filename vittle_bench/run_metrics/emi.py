"""`--metrics emi`: EMI per open-ended cell and EMID per shifted cell, from one CLUB estimator fitted on every
open-ended cell of the run (or a given one), saved in the run directory as emi_estimator.pt."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from vittle_bench.adapters import TaskAdapter
from vittle_bench.encoders import load_encoder_pair
from vittle_bench.encoders.cache import EmbeddingCache
from vittle_bench.metrics.emi import resolve_estimator
from vittle_bench.metrics.emi_cells import emi_rows
from vittle_bench.run_metrics import RUN_METRICS, RunContext, RunMetric
from vittle_bench.schema import CellResult, Sample, SampleResult
from vittle_bench.shifts import ShiftCondition

ESTIMATOR_FILE = "emi_estimator.pt"


@RUN_METRICS.register("emi")
class EmiMetric(RunMetric):
    """Reads open-ended cells only: EMI needs free-text reference answers."""

    def __init__(self, context: RunContext) -> None:
        super().__init__(context)
        self.records: dict[tuple[str, str, str], list[dict]] = {}  # (model, task, condition) -> the fields EMI reads
        self.rows: dict[tuple[str, str], Sequence[Sample]] = {}  # (task, condition) -> unshifted rows

    def check(self) -> None:
        resolve_estimator(self.context.options["emi_estimator"])

    def reads(self, adapter: TaskAdapter) -> bool:
        return adapter.name == "open_ended"

    def collect(self, model: str, task: str, condition: ShiftCondition, records: Sequence[SampleResult],
                rows: Sequence[Sample]) -> None:
        self.records[(model, task, condition.label)] = [
            {"sample_id": r.sample_id, "raw_output": r.raw_output, "answer": r.answer, "error": r.error}
            for r in records]
        self.rows[(task, condition.label)] = rows

    def finish(self, conditions: Sequence[ShiftCondition]) -> tuple[list[CellResult], dict[str, Any]]:
        if not self.records:
            return [], {"skipped": "no open-ended task in the run: EMI needs free-text reference answers"}
        context = self.context
        with EmbeddingCache(context.cache_dir / "embeddings.sqlite" if context.cache_dir else None) as cache:
            report = emi_rows(self.records, self.rows, conditions, load_encoder_pair(*context.options["emi_encoders"]),
                              seed=context.seed, cache=cache,
                              estimator=resolve_estimator(context.options["emi_estimator"]))
        manifest = dict(report.manifest)
        if report.estimator is not None:
            report.estimator.save(context.output / ESTIMATOR_FILE)
            manifest["estimator"] = ESTIMATOR_FILE
        return report.rows, manifest
