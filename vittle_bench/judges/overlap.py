"""Offline stand-in for the LLM judge: word-overlap F1 between the answer and the reference.

This is NOT the LLaVA-Bench GPT-4 judge. It exists so open-ended tasks run end to end with no network;
results it produces are labelled `relative_score_overlap`, never `relative_score`, so nobody mistakes them
for judge scores. Scale: model score = 1 + 9 x F1 (1-10, as the rubric); the reference scores itself 10.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import ClassVar

from vittle_bench.judges.base import JUDGES, Judge, Judgment
from vittle_bench.schema import Sample

_WORD = re.compile(r"\w+", re.UNICODE)


def word_f1(answer: str, reference: str) -> float:
    a, r = Counter(_WORD.findall(answer.lower())), Counter(_WORD.findall(reference.lower()))
    common = sum((a & r).values())
    if not common:
        return 0.0
    precision, recall = common / sum(a.values()), common / sum(r.values())
    return 2 * precision * recall / (precision + recall)


@JUDGES.register("overlap")
@dataclass(frozen=True)
class ReferenceOverlapJudge(Judge):
    name: str = "overlap"
    label: ClassVar[str] = "overlap"

    def judge_many(self, items: list[tuple[Sample, str]]) -> list[Judgment]:
        return [Judgment(1 + 9 * word_f1(answer, sample.answer), 10.0) if sample.answer
                else Judgment.failure("no reference answer") for sample, answer in items]
