"""Open-ended QA scored LLaVA-Bench style: relative score = 100 x mean(model score) / mean(reference score),
overall and per category.

Adapter args: `judge` (a judge spec: `openai:MODEL`, `embedding`, `overlap`), `judge_args` (passed to the
judge, e.g. base_url, concurrency), `judge_cache` (SQLite path of the judgment cache; None = no cache).

The metric is `relative_score` only for an LLM judge; a stand-in judge's label is appended
(`relative_score_embedding`, `relative_score_overlap`), so leaderboards cannot mix the two up. A failed
judgment scores (None, None): it is counted per cell as `judge_failed` and excluded from the means, never
imputed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from vittle_bench.judges.base import Judge, judge_class, load_judge
from vittle_bench.metrics.stats import bootstrap_metrics
from vittle_bench.schema import Parsed, Request, Sample, SampleResult
from vittle_bench.tasks.base import TASK_ADAPTERS

log = logging.getLogger(__name__)


def relative_score(model_scores: np.ndarray, reference_scores: np.ndarray) -> float:
    return 100.0 * float(np.mean(model_scores)) / float(np.mean(reference_scores))


@TASK_ADAPTERS.register("open_ended")
@dataclass
class OpenEndedAdapter:
    judge: str = "overlap"
    max_new_tokens: int = 64
    judge_args: dict[str, Any] = field(default_factory=dict, repr=False)  # may hold an api_key: keep out of repr
    judge_cache: str | None = None
    name: str = "open_ended"
    primary_metric: ClassVar[str] = "relative_score (per category)"
    _judge: Judge | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._judge_class = judge_class(self.judge)  # fails on a bad spec now; loads nothing (aggregation needs none)

    @property
    def metric_name(self) -> str:
        label = getattr(self._judge_class, "label", self.judge)
        return f"relative_score_{label}" if label else "relative_score"

    def get_judge(self) -> Judge:
        """The judge, built on first use (a network client or an encoder is only made when scoring)."""
        if self._judge is None:
            args = dict(self.judge_args)
            if getattr(self._judge_class, "uses_cache", False):
                args.setdefault("cache", self.judge_cache)
            self._judge = load_judge(self.judge, **args)
        return self._judge

    def build_request(self, sample: Sample) -> Request:
        return Request(sample.question, sample.images, self.max_new_tokens)

    def parse(self, raw: str, sample: Sample) -> Parsed:
        text = raw.strip()
        return Parsed(text or None, bool(text))

    def score(self, sample: Sample, parsed: Parsed, raw: str) -> tuple[float | None, float | None]:
        """(model score, reference score); (None, None) when the judgment failed (counted, not imputed)."""
        return self.score_batch([(sample, raw)])[0]

    def score_batch(self, items: list[tuple[Sample, str]]) -> list[tuple[float | None, float | None]]:
        """`score` for a whole batch at once, so an LLM judge can work on it concurrently."""
        judgments = self.get_judge().judge_many([(sample, raw.strip()) for sample, raw in items])
        out: list[tuple[float | None, float | None]] = []
        for (sample, _), judgment in zip(items, judgments):
            if judgment.failed:
                log.warning("judge %s failed on %s/%s: %s", self.judge, sample.task, sample.sample_id, judgment.error)
                out.append((None, None))
            else:
                out.append((judgment.model_score, judgment.reference_score))
        return out

    def aggregate(self, records: list[SampleResult], seed: int):
        judged = [r for r in records if r.score is not None and r.reference_score is not None]
        failed = len(records) - len(judged)
        model = np.array([r.score for r in judged])
        reference = np.array([r.reference_score for r in judged])
        categories = np.array([r.category or "" for r in judged])
        name = self.metric_name

        def statistic(idx: np.ndarray) -> dict[str, float]:
            out = {name: relative_score(model[idx], reference[idx])}
            for cat in sorted(set(categories) - {""}):
                mask = categories[idx] == cat
                out[f"{name}/{cat}"] = relative_score(model[idx][mask], reference[idx][mask]) if mask.any() else np.nan
            return out

        rows = bootstrap_metrics(statistic, len(judged), seed) if judged else []
        return rows + [("judge_failed", float(failed), None, None, len(records))]
