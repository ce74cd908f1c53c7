"""POPE object-hallucination detection (Li et al., 2023), with the POPE authors' parsing and metrics.

Metrics are the POPE authors' evaluate.py with "yes" as the positive class: accuracy, precision, recall, F1
and yes-ratio (share of *predicted* yes), each over all answered questions. An unparseable answer (see
`parse_pope_answer`) is wrong in accuracy, a missed positive when the gold answer is yes, never a false
positive, and is reported as unparseable_rate. Precision and F1 are 0 when nothing is predicted yes (the
official code divides by zero).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from vittle_bench.adapters.base import TASK_ADAPTERS
from vittle_bench.adapters.yes_no import YesNoAdapter
from vittle_bench.metrics.base import Metric
from vittle_bench.metrics.definitions import ACCURACY, F1, PRECISION, RECALL, UNPARSEABLE_RATE, YES_RATIO
from vittle_bench.schema import Parsed, Sample


def parse_pope_answer(raw: str) -> Parsed:
    """The POPE authors' rule (evaluate.py): keep the text before the first '.', drop commas, split on the
    space character ' ' (only: "No\nthe image ..." is one word "No\nthe", so it reads yes); the answer is
    "no" if a word equals `No`, `no` or `not`, else "yes". Case-sensitive as the official code ("Not" and
    "NO" read as yes), so every number equals evaluate.py's on the same outputs.

    The one deliberate difference: an output that is empty or only whitespace is unparseable (the official
    code calls it "yes"), so a model that says nothing is counted in unparseable_rate, not credited.
    """
    if not raw.strip():
        return Parsed(None, False)
    words = raw.split(".", 1)[0].replace(",", "").split(" ")
    return Parsed("no" if any(w in ("No", "no", "not") for w in words) else "yes", True)


@TASK_ADAPTERS.register("pope")
@dataclass
class PopeAdapter(YesNoAdapter):
    max_new_tokens: int = 8
    name: ClassVar[str] = "pope"
    metrics: ClassVar[tuple[Metric, ...]] = (ACCURACY, PRECISION, RECALL, F1, YES_RATIO, UNPARSEABLE_RATE)
    primary_metric: ClassVar[str] = "accuracy"

    def normalise_answer(self, answer: str) -> str:
        return answer.strip().lower()

    def parse(self, raw: str, sample: Sample) -> Parsed:
        return parse_pope_answer(raw)
