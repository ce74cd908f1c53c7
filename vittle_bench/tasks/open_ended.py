"""Open-ended QA scored LLaVA-Bench style: relative score = 100 x mean(model score) / mean(reference score)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from vittle_bench.judges import JUDGES, Judge
from vittle_bench.metrics.stats import bootstrap_metrics
from vittle_bench.schema import Parsed, Request, Sample, SampleResult
from vittle_bench.tasks.base import TASK_ADAPTERS


def relative_score(model_scores: np.ndarray, reference_scores: np.ndarray) -> float:
    return 100.0 * float(np.mean(model_scores)) / float(np.mean(reference_scores))


@TASK_ADAPTERS.register("open_ended")
@dataclass
class OpenEndedAdapter:
    judge: str = "overlap"
    max_new_tokens: int = 64
    name: str = "open_ended"
    _judge: Judge = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._judge = JUDGES.get(self.judge)()

    @property
    def metric_name(self) -> str:
        return "relative_score" if self.judge != "overlap" else "relative_score_overlap"

    def build_request(self, sample: Sample) -> Request:
        return Request(sample.question, sample.images, self.max_new_tokens)

    def parse(self, raw: str, sample: Sample) -> Parsed:
        text = raw.strip()
        return Parsed(text or None, bool(text))

    def score(self, sample: Sample, parsed: Parsed, raw: str) -> tuple[float | None, float | None]:
        """(model score, reference score); (None, None) when the judgment failed (counted, not imputed)."""
        judgment = self._judge.judge(sample, raw.strip())
        return (None, None) if judgment.failed else (judgment.model_score, judgment.reference_score)

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
