"""Open-ended QA scored LLaVA-Bench style: relative score = 100 x mean(model score) / mean(reference score),
overall and per category.

Adapter args: `judge` (a judge spec: `openai:MODEL`, `embedding`, `overlap`), `judge_args` (passed to the
judge, e.g. base_url, concurrency; `--judge-args` override them), `judge_cache` (SQLite path of the judgment
cache; None = no cache), and the LLM judge's protocol as the task's YAML declares it: `judge_rubric` (a name
in judges/rubrics.py), `judge_temperature`, `judge_repeats` (reviews per answer, averaged). Stand-in judges
ignore the protocol (they are deterministic and read no rubric).

The metric is `relative_score` only for an LLM judge; a stand-in judge's label is appended
(`relative_score_embedding`, `relative_score_overlap`), so leaderboards cannot mix the two up. A failed
judgment scores (None, None): it is counted per cell as `judge_failed` and excluded from the means, never
imputed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

from vittle_bench.adapters.base import TASK_ADAPTERS, TaskAdapter
from vittle_bench.errors import ConfigError
from vittle_bench.judges.base import Judge, judge_class, load_judge
from vittle_bench.judges.rubrics import AUTO, check_rubric
from vittle_bench.metrics.base import Metric, lookup
from vittle_bench.metrics.definitions import (
    JUDGE_FAILED,
    RELATIVE_SCORE_EMBEDDING,
    RELATIVE_SCORE_JUDGE,
    RELATIVE_SCORE_OVERLAP,
)
from vittle_bench.schema import Parsed, Request, Sample, SampleResult, Score

log = logging.getLogger(__name__)


@TASK_ADAPTERS.register("open_ended")
@dataclass
class OpenEndedAdapter(TaskAdapter):
    judge: str = "overlap"
    max_new_tokens: int = 64
    judge_args: dict[str, Any] = field(default_factory=dict, repr=False)  # may hold an api_key: keep out of repr
    judge_cache: str | None = None
    judge_rubric: str = AUTO
    judge_temperature: float = 0.0
    judge_repeats: int = 1
    name: ClassVar[str] = "open_ended"
    metrics: ClassVar[tuple[Metric, ...]] = (RELATIVE_SCORE_JUDGE, RELATIVE_SCORE_EMBEDDING, RELATIVE_SCORE_OVERLAP,
                                             JUDGE_FAILED)
    primary_metric: ClassVar[str] = "relative_score"
    judged: ClassVar[bool] = True
    _judge: Judge | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._judge_class = judge_class(self.judge)  # fails on a bad spec now; loads nothing (aggregation needs none)
        if self._judge_class.pairwise:
            raise ConfigError(f"judge {self.judge!r} gives pairwise verdicts: only pairwise tasks use it, and they "
                              "take --judge openai:MODEL; open-ended tasks take openai:MODEL, embedding or overlap")
        check_rubric(self.judge_rubric)
        if not isinstance(self.judge_repeats, int) or self.judge_repeats < 1:
            raise ConfigError(f"judge_repeats must be a positive integer, got {self.judge_repeats!r}")

    @property
    def headline(self) -> str:
        """`relative_score` for an LLM judge; a stand-in's label is appended (`relative_score_overlap`)."""
        label = self._judge_class.label
        return f"relative_score_{label}" if label else "relative_score"

    @property
    def scorer(self) -> str | None:
        return self.judge

    def judge_protocol(self) -> dict[str, Any]:
        """What an LLM judge is asked to do for this task (recorded in manifest.json with the adapter args)."""
        return {"rubric": self.judge_rubric, "temperature": self.judge_temperature, "repeats": self.judge_repeats}

    def judge_calls_per_answer(self) -> int:
        return self.judge_repeats if judge_class(self.judge).follows_rubric else 0

    def get_judge(self) -> Judge:
        """The judge, built on first use (a network client or an encoder is only made when scoring)."""
        if self._judge is None:
            args = {**(self.judge_protocol() if self._judge_class.follows_rubric else {}), **self.judge_args}
            if self._judge_class.uses_cache:
                args.setdefault("cache", self.judge_cache)
            self._judge = load_judge(self.judge, **args)
        return self._judge

    def build_request(self, sample: Sample) -> Request:
        return Request(sample.question, sample.images, self.max_new_tokens)

    def parse(self, raw: str, sample: Sample) -> Parsed:
        text = raw.strip()
        return Parsed(text or None, bool(text))

    def score(self, sample: Sample, parsed: Parsed, raw: str) -> tuple[float | None, float | None]:
        """(model score, reference score); (None, None) when the judgment failed (counted, not imputed).
        `score_batch` also returns the judge's review."""
        scored = self.score_batch([(sample, parsed, raw)])[0]
        return scored.score, scored.reference_score

    def score_batch(self, items: list[tuple[Sample, Parsed, str]]) -> list[Score]:
        """`score` for a whole batch at once, so an LLM judge can work on it concurrently."""
        judgments = self.get_judge().judge_many([(sample, raw.strip()) for sample, _, raw in items])
        out: list[Score] = []
        for (sample, _, _), judgment in zip(items, judgments):
            if judgment.failed:
                log.warning("judge %s failed on %s/%s: %s", self.judge, sample.task, sample.sample_id, judgment.error)
                out.append(Score(None, None))
            else:
                out.append(Score(judgment.model_score, judgment.reference_score, judgment.review))
        return out

    def cell_metrics(self, records: list[SampleResult]) -> list[Metric]:
        """The judge's relative score, overall and per category, and the count of failed judgments."""
        relative = lookup(self.headline)
        assert relative is not None  # declared in `metrics`
        categories = sorted({r.category for r in records if r.category})
        return [relative, *(relative.within(c) for c in categories), JUDGE_FAILED]
