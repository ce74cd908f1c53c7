"""What the yes/no adapters (POPE, MME) share: the prompt is the question followed by the short-answer
instruction, and a sample scores 1 when its parsed answer equals the gold answer ("yes" or "no"), 0 otherwise
(an unparseable answer included). Each adapter brings its own parser, gold-answer normalisation, generation
length, metrics and aggregation."""

from __future__ import annotations

from dataclasses import dataclass

from vittle_bench.adapters.base import SHORT_ANSWER_SUFFIX, TaskAdapter
from vittle_bench.schema import Parsed, Request, Sample


@dataclass
class YesNoAdapter(TaskAdapter):
    prompt_suffix: str = SHORT_ANSWER_SUFFIX

    def build_request(self, sample: Sample) -> Request:
        return Request(sample.question + self.prompt_suffix, sample.images, self.max_new_tokens)

    def score(self, sample: Sample, parsed: Parsed, raw: str) -> tuple[float | None, float | None]:
        return float(parsed.ok and parsed.value == sample.answer), None
