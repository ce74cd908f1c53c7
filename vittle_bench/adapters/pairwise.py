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

from vittle_bench.adapters.base import TASK_ADAPTERS
from vittle_bench.adapters.open_ended import OpenEndedAdapter
from vittle_bench.errors import ConfigError
from vittle_bench.judges.base import Judge, load_judge
from vittle_bench.metrics.base import Metric
from vittle_bench.metrics.definitions import JUDGE_FAILED, LOSS_RATE, MEAN_VERDICT, TIE_RATE, WIN_RATE
from vittle_bench.schema import SampleResult


@TASK_ADAPTERS.register("pairwise")
@dataclass
class PairwiseAdapter(OpenEndedAdapter):
    judge: str = ""
    name: ClassVar[str] = "pairwise"
    metrics: ClassVar[tuple[Metric, ...]] = (WIN_RATE, TIE_RATE, LOSS_RATE, MEAN_VERDICT, JUDGE_FAILED)
    primary_metric: ClassVar[str] = "win_rate"

    def __post_init__(self) -> None:
        scheme, _, model = self.judge.partition(":")
        if scheme != "openai" or not model:
            got = f" (got {self.judge!r})" if self.judge else ""
            raise ConfigError(f"pairwise-judged tasks (WildVision-Bench) need an LLM judge{got}: pass "
                              "--judge openai:MODEL, e.g. openai:gpt-4o, with --judge-args base_url=...,api_key=... "
                              "for endpoints other than OpenAI's")

    @property
    def headline(self) -> str:
        return self.primary_metric

    def get_judge(self) -> Judge:
        if self._judge is None:
            args = {"temperature": self.judge_temperature, "repeats": self.judge_repeats, "cache": self.judge_cache,
                    **self.judge_args}
            self._judge = load_judge(f"pairwise:{self.judge.partition(':')[2]}", **args)
        return self._judge

    def cell_metrics(self, records: list[SampleResult]) -> list[Metric]:
        return list(self.metrics)
