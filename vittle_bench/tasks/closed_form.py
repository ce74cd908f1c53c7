"""Closed-form multiple-choice QA: lmms-eval's prompt, one documented answer-extraction chain, accuracy."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

import numpy as np

from vittle_bench.metrics.stats import bootstrap_metrics
from vittle_bench.schema import Parsed, Request, Sample, SampleResult
from vittle_bench.tasks.base import TASK_ADAPTERS

MC_SUFFIX = "\nAnswer with the option's letter from the given choices directly."


def format_options(choices: tuple[str, ...]) -> str:
    return "\n".join(f"{string.ascii_uppercase[i]}. {c}" for i, c in enumerate(choices))


def parse_choice(raw: str, choices: tuple[str, ...]) -> Parsed:
    """Extract the chosen letter, trying in order and stopping at the first rule that applies:

    1. the whole answer is one valid letter, optionally with '.', ')' or ':' ("B", "B.", "(B)");
    2. an explicit statement: "Answer: B", "answer is (B)", "option B";
    3. the answer starts with a valid letter followed by '.', ')' or ':' ("B. red", "(B) red");
    4. exactly one option's text occurs in the answer (case-insensitive, whole words).
    Anything else, including two different letters or several matching options, is unparseable.
    """
    letters = string.ascii_uppercase[: len(choices)]
    text = raw.strip()
    if not letters or not text:
        return Parsed(None, False)
    valid = f"[{letters}]"
    patterns = (
        rf"^\(?({valid})\)?[.:)]?$",
        rf"(?i:answer(?: is)?|option)\s*[:：]?\s*\(?({valid})\b\)?",
        rf"^\(?({valid})[.:)]",
    )
    for pattern in patterns:
        match = re.search(pattern, text)
        if match:
            return Parsed(match.group(1), True)
    lowered = text.lower()
    hits = [letters[i] for i, c in enumerate(choices) if c and re.search(rf"\b{re.escape(c.lower())}\b", lowered)]
    return Parsed(hits[0], True) if len(hits) == 1 else Parsed(None, False)


@TASK_ADAPTERS.register("closed_form")
@dataclass
class ClosedFormAdapter:
    prompt_suffix: str = MC_SUFFIX
    max_new_tokens: int = 8
    name: str = "closed_form"

    def build_request(self, sample: Sample) -> Request:
        parts = [sample.question]
        if sample.context:
            parts.append(f"Context: {sample.context}")
        if sample.choices:
            parts.append(format_options(sample.choices))
        return Request("\n".join(parts) + self.prompt_suffix, sample.images, self.max_new_tokens)

    def parse(self, raw: str, sample: Sample) -> Parsed:
        return parse_choice(raw, sample.choices)

    def score(self, sample: Sample, parsed: Parsed, raw: str) -> tuple[float | None, float | None]:
        return float(parsed.ok and parsed.value == sample.answer), None

    def aggregate(self, records: list[SampleResult], seed: int):
        correct = np.array([r.score or 0.0 for r in records])
        unparsed = np.array([not r.parse_ok for r in records], dtype=float)
        return bootstrap_metrics(
            lambda idx: {"accuracy": correct[idx].mean(), "unparseable_rate": unparsed[idx].mean()}, len(records), seed)
