"""Judge contract: score the model's answer and the reference answer to one question on 1-10."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from vittle_bench.registry import Registry
from vittle_bench.schema import Sample


@dataclass(frozen=True)
class Judgment:
    model_score: float | None
    reference_score: float | None
    failed: bool = False


class Judge(Protocol):
    name: str  # recorded with every score, so leaderboards can label stand-in judges

    def judge(self, sample: Sample, answer: str) -> Judgment: ...


JUDGES: Registry[type] = Registry("judges", ("vittle_bench.judges.reference_overlap",))
