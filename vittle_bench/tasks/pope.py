"""POPE object-hallucination detection (Li et al., 2023), with the POPE authors' parsing and metrics."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from vittle_bench.metrics.pope import pope_metrics
from vittle_bench.metrics.stats import bootstrap_metrics
from vittle_bench.schema import Parsed, Request, Sample, SampleResult
from vittle_bench.tasks.base import TASK_ADAPTERS

POPE_SUFFIX = "\nAnswer the question using a single word or phrase."


def parse_pope_answer(raw: str) -> Parsed:
    """The POPE authors' rule: keep the text before the first '.', drop commas, split on spaces;
    the answer is "no" if a word equals `No`, `no` or `not`, else "yes".

    We keep its case-sensitivity ("Not"/"NO" read as yes) so numbers match the official code. One
    deliberate difference: an output with no words at all is unparseable (the official code calls it
    "yes"), so a model that says nothing is counted, not credited.
    """
    words = raw.split(".", 1)[0].replace(",", "").split()
    if not words:
        return Parsed(None, False)
    return Parsed("no" if any(w in ("No", "no", "not") for w in words) else "yes", True)


@TASK_ADAPTERS.register("pope")
@dataclass
class PopeAdapter:
    prompt_suffix: str = POPE_SUFFIX
    max_new_tokens: int = 8
    name: str = "pope"
    primary_metric: ClassVar[str] = "accuracy, f1"

    def build_request(self, sample: Sample) -> Request:
        return Request(sample.question + self.prompt_suffix, sample.images, self.max_new_tokens)

    def parse(self, raw: str, sample: Sample) -> Parsed:
        return parse_pope_answer(raw)

    def score(self, sample: Sample, parsed: Parsed, raw: str) -> tuple[float | None, float | None]:
        return float(parsed.ok and parsed.value == (sample.answer or "").strip().lower()), None

    def aggregate(self, records: list[SampleResult], seed: int):
        gold = np.array([r.answer == "yes" for r in records], dtype=bool)
        pred_yes = np.array([r.parsed == "yes" for r in records], dtype=bool)
        pred_no = np.array([r.parsed == "no" for r in records], dtype=bool)
        return bootstrap_metrics(lambda idx: pope_metrics(gold[idx], pred_yes[idx], pred_no[idx]), len(records), seed)
