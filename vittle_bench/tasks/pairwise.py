"""Pairwise-judged open-ended QA (WildVision-Bench): an LLM judge compares the model's answer with a baseline
model's answer shipped in the data (the Sample's `answer`) and gives a verdict from -2 to +2 (see
judges/pairwise.py). Metrics: `win_rate` (share of samples the model wins), `tie_rate`, `loss_rate` and
`mean_verdict`, each with a bootstrap interval, and `judge_failed` (counted, never imputed).

The judge must be an LLM (`--judge openai:MODEL`; WildVision uses gpt-4o): there is no offline stand-in for
a preference between two free-form answers, so a run without one stops before any model loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from vittle_bench.config import ConfigError
from vittle_bench.judges.base import Judge
from vittle_bench.metrics.stats import bootstrap_metrics
from vittle_bench.schema import SampleResult
from vittle_bench.tasks.base import TASK_ADAPTERS
from vittle_bench.tasks.open_ended import OpenEndedAdapter


@TASK_ADAPTERS.register("pairwise")
@dataclass
class PairwiseAdapter(OpenEndedAdapter):
    judge: str = ""
    name: str = "pairwise"
    primary_metric: ClassVar[str] = "win_rate"

    def __post_init__(self) -> None:
        scheme, _, model = self.judge.partition(":")
        if scheme != "openai" or not model:
            got = f" (got {self.judge!r})" if self.judge else ""
            raise ConfigError(f"pairwise-judged tasks (WildVision-Bench) need an LLM judge{got}: pass "
                              "--judge openai:MODEL, e.g. openai:gpt-4o, with --judge-args base_url=...,api_key=... "
                              "for endpoints other than OpenAI's")

    @property
    def metric_name(self) -> str:
        return "win_rate"

    def get_judge(self) -> Judge:
        if self._judge is None:
            from vittle_bench.judges.pairwise import PairwiseJudge

            self._judge = PairwiseJudge(self.judge.partition(":")[2], **{"cache": self.judge_cache, **self.judge_args})
        return self._judge

    def aggregate(self, records: list[SampleResult], seed: int):
        verdicts = np.array([r.score for r in records if r.score is not None], dtype=float)
        failed = len(records) - len(verdicts)

        def statistic(idx: np.ndarray) -> dict[str, float]:
            v = verdicts[idx]
            return {"win_rate": float(np.mean(v > 0)), "tie_rate": float(np.mean(v == 0)),
                    "loss_rate": float(np.mean(v < 0)), "mean_verdict": float(np.mean(v))}

        rows = bootstrap_metrics(statistic, len(verdicts), seed) if len(verdicts) else []
        return rows + [("judge_failed", float(failed), None, None, len(records))]
