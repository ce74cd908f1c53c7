"""The adapter contract. Adapters know nothing about shifts or models: they see Samples and raw strings.

Every adapter derives from `TaskAdapter`, which declares what the runner and the exports need with defaults:
the metrics it reports (declared once in `metrics/definitions.py` or by a plugin, registered with the
adapter) and its headline metric, how gold answers are normalised at load, whether it is judged, and batch
scoring. A plugin adapter registered through the entry-point group `vittle_bench.tasks` is read the same way.
"""

from __future__ import annotations

import inspect
from typing import Any, ClassVar

from vittle_bench.errors import ConfigError
from vittle_bench.metrics.base import METRICS, Metric, lookup, ratio_aggregate, records_frame, register_metric
from vittle_bench.metrics.stats import MetricValue
from vittle_bench.registry import Registry
from vittle_bench.schema import Parsed, Request, Sample, SampleResult, Score


class TaskAdapter:
    """Prompt building, answer parsing, per-sample scoring and per-cell aggregation for one kind of task."""

    name: ClassVar[str] = ""
    metrics: ClassVar[tuple[Metric, ...]] = ()  # every metric `aggregate` may report (per category too)
    primary_metric: ClassVar[str] = ""  # the headline metric, one of `metrics`
    judged: ClassVar[bool] = False  # scored by a judge: the run's --judge choice and judgment cache apply
    max_new_tokens: int = 32

    @property
    def headline(self) -> str:
        """The metric leaderboards show for this task (an adapter may make it depend on its arguments)."""
        return self.primary_metric

    @property
    def scorer(self) -> str | None:
        """Who scored the samples (a judge's name), recorded with every sample; None for rule-based tasks."""
        return None

    def judge_protocol(self) -> dict[str, Any] | None:
        """What a judge is asked to do for this task (rubric, temperature, repeats); None for rule-based tasks."""
        return None

    def judge_calls_per_answer(self) -> int:
        """LLM judge requests per answered sample (what `run --dry-run` counts); 0 for rule-based tasks and
        offline judges."""
        return 0

    def normalise_answer(self, answer: str) -> str:
        """A gold answer as the task compares it; applied once, when samples are loaded."""
        return answer.strip()

    def prepare(self, sample: Sample) -> Sample:
        if sample.answer is None or sample.load_error:
            return sample
        answer = self.normalise_answer(sample.answer)
        return sample if answer == sample.answer else sample.with_changes(answer=answer)

    def build_request(self, sample: Sample) -> Request:
        raise NotImplementedError

    def parse(self, raw: str, sample: Sample) -> Parsed:
        raise NotImplementedError

    def score(self, sample: Sample, parsed: Parsed, raw: str) -> tuple[float | None, float | None]:
        """(score, reference score); the reference score is only set by judged tasks, None = not scored."""
        raise NotImplementedError

    def score_batch(self, items: list[tuple[Sample, Parsed, str]]) -> list[Score]:
        """`score` for a batch; judged adapters override it to judge the batch concurrently (and return the
        judge's review with each score)."""
        return [Score(*self.score(sample, parsed, raw)) for sample, parsed, raw in items]

    def cell_metrics(self, records: list[SampleResult]) -> list[Metric]:
        """The declared metrics a cell reports, in order (adapters add per-category variants)."""
        return [m for m in self.metrics if m.parts is not None]

    def aggregate(self, records: list[SampleResult], seed: int) -> list[MetricValue]:
        """Per-cell metrics with bootstrap intervals, computed from each metric's per-sample parts."""
        if not records:
            return []
        return ratio_aggregate(self.cell_metrics(records), records_frame(records), seed)


def check_adapter_args(adapter: str, args: dict[str, Any], where: str) -> None:
    """An argument the adapter does not take is a typo in a task file: a ConfigError naming the file (`where`)
    and what the adapter takes, instead of the TypeError its constructor would raise."""
    params = inspect.signature(TASK_ADAPTERS.get(adapter)).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    accepted = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = sorted(set(args) - set(accepted))
    if unknown:
        raise ConfigError(f"{where}: unknown adapter_args {', '.join(unknown)}; adapter {adapter} takes "
                          f"{', '.join(accepted) or 'none'}")


def _register_declared_metrics(name: str, adapter: Any) -> None:
    if not (isinstance(adapter, type) and issubclass(adapter, TaskAdapter)):
        raise TypeError(f"task adapter {name!r} must be a class deriving from vittle_bench.adapters.TaskAdapter")
    for metric in adapter.metrics:
        register_metric(metric)


# LLaVA-1.5's short-answer instruction, appended to POPE, MME and open closed-form questions (LLaVA-1.5's POPE
# question files; lmms-eval's MME `post_prompt`).
SHORT_ANSWER_SUFFIX = "\nAnswer the question using a single word or phrase."

# Kind `adapters` (unknown names point to `vittle-bench list adapters`); plugins register in the entry-point
# group `vittle_bench.tasks` (docs/plugins.md).
TASK_ADAPTERS: Registry[type] = Registry(
    "adapters", ("vittle_bench.adapters.pope", "vittle_bench.adapters.closed_form",
                 "vittle_bench.adapters.open_ended", "vittle_bench.adapters.pairwise", "vittle_bench.adapters.mme"),
    on_add=_register_declared_metrics, group="vittle_bench.tasks")


def declared_metric(name: str) -> Metric | None:
    """A results.csv metric's declaration, after every adapter (plugins included) has declared its own."""
    TASK_ADAPTERS.names()
    METRICS.names()
    return lookup(name)
