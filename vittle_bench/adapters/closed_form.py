"""Closed-form QA (ScienceQA-IMG, MMMU, MMStar, the built-in MC): lmms-eval's prompts, one documented
answer-extraction chain, accuracy. Items without options (MMMU's open questions) are scored by MMMU's
open-answer rule."""

from __future__ import annotations

import ast
import re
import string
from dataclasses import dataclass
from typing import ClassVar

from vittle_bench.adapters.base import SHORT_ANSWER_SUFFIX, TASK_ADAPTERS, TaskAdapter
from vittle_bench.metrics.base import Metric
from vittle_bench.metrics.definitions import ACCURACY, UNPARSEABLE_RATE
from vittle_bench.schema import Parsed, Request, Sample, SampleResult

MC_SUFFIX = "\nAnswer with the option's letter from the given choices directly."
OPTIONS_FORMATS = ("lines", "inline")


def format_options(choices: tuple[str, ...], style: str = "lines") -> str:
    """lines: "A. x" one per line (ScienceQA, MMMU); inline: "Options: A: x, B: y" (MMStar's own text)."""
    if style == "inline":
        return "Options: " + ", ".join(f"{string.ascii_uppercase[i]}: {c}" for i, c in enumerate(choices))
    return "\n".join(f"{string.ascii_uppercase[i]}. {c}" for i, c in enumerate(choices))


def parse_choice(raw: str, choices: tuple[str, ...]) -> Parsed:
    """Extract the chosen letter, trying in order and stopping at the first rule that applies
    (markdown emphasis `*` and backticks are removed first, so "**B**" reads as "B"):

    1. the whole answer is one valid letter, optionally with '.', ')' or ':' ("B", "B.", "(B)");
    2. the answer starts with a valid letter followed by '.', ')', ':' or a line break ("B. red", "(B) red",
       "B\nBecause ...", "C. Option A is incorrect" -> C): what a model says first is its answer;
    3. an explicit statement: "Answer: B", "answer is (B)", "option B", "the correct choice is D";
    4. exactly one option's text occurs in the answer (case-insensitive, not inside a longer word or number:
       option "1" does not occur in "-1", and an occurrence inside a longer option's occurrence - "1" inside
       "-1", "5" inside "$5" - counts for the longer option only).
    Anything else, including two different letters or several matching options, is unparseable. Letters are
    upper-case only: a lone "a" is an article as often as an answer.
    """
    letters = string.ascii_uppercase[: len(choices)]
    text = re.sub(r"[*`]+", "", raw).strip()
    if not letters or not text:
        return Parsed(None, False)
    valid = f"[{letters}]"
    patterns = (
        rf"^\(?({valid})\)?[.:)]?$",
        rf"^\(?({valid})(?:[.:)]|\)?\s*\n)",
        rf"(?i:answer|option|choice)(?:\s+is)?\s*[:：]?\s*\(?({valid})\b\)?",
    )
    for pattern in patterns:
        match = re.search(pattern, text)
        if match:
            return Parsed(match.group(1), True)
    hits = _options_mentioned(text.lower(), [c.strip().lower() for c in choices])
    return Parsed(letters[hits[0]], True) if len(hits) == 1 else Parsed(None, False)


def _options_mentioned(text: str, options: list[str]) -> list[int]:
    """Indices of the options whose text occurs in `text` as a whole token sequence, where an occurrence that
    lies inside an occurrence of a longer option is not counted."""
    spans = {i: [m.span() for m in re.finditer(rf"(?<!\w){re.escape(o)}(?!\w)", text)]
             for i, o in enumerate(options) if o}

    def covered(i: int, span: tuple[int, int]) -> bool:
        return any(j != i and len(options[j]) > len(options[i]) and s[0] <= span[0] and span[1] <= s[1]
                   for j, other in spans.items() for s in other)

    return [i for i, found in spans.items() if any(not covered(i, span) for span in found)]


_NUMBER = re.compile(r"-?\d[\d,]*\.?\d*(?:[eE][+-]?\d+)?|-?\.\d+")


def _as_number(text: str) -> float | None:
    try:
        return round(float(text.replace(",", "")), 2)
    except ValueError:
        return None


def parse_open(raw: str) -> Parsed:
    """An open (no-options) answer: the stripped text, lower-cased, trailing period removed; empty = unparseable."""
    text = raw.strip().rstrip(".").strip().lower()
    return Parsed(text or None, bool(text))


def open_answer_correct(parsed: str, gold: str) -> bool:
    """MMMU's open-answer rule (eval_open in the MMMU authors' eval_utils), simplified to whole answers:
    gold answers are the answer or each element of a list literal; a numeric gold answer is correct when a
    number in the output equals it after rounding to 2 decimals, a text gold answer when its lower-cased
    text occurs in the output (a one-character answer only as a whole word)."""
    try:
        golds = ast.literal_eval(gold) if gold.strip().startswith("[") else [gold]
    except (ValueError, SyntaxError):
        golds = [gold]
    numbers = {n for n in (_as_number(m) for m in _NUMBER.findall(parsed)) if n is not None}
    for g in (str(x).strip() for x in golds):
        number = _as_number(g)
        if number is not None and number in numbers:
            return True
        g = g.lower()
        if number is None and g and re.search(rf"(?<!\w){re.escape(g)}(?!\w)" if len(g) == 1 else re.escape(g), parsed):
            return True
    return False


@TASK_ADAPTERS.register("closed_form")
@dataclass
class ClosedFormAdapter(TaskAdapter):
    """Prompt (lmms-eval's): ["Context: <hint>\\n"] question "\\n" options + prompt_suffix; items without
    options get open_prompt_suffix instead. `per_category` adds accuracy/<category> (micro accuracy within
    each category; MMStar's official "average" is the macro mean over its 18 sub-categories, not reported)."""

    prompt_suffix: str = MC_SUFFIX
    open_prompt_suffix: str = SHORT_ANSWER_SUFFIX
    options_format: str = "lines"
    per_category: bool = False
    max_new_tokens: int = 8
    name: ClassVar[str] = "closed_form"
    metrics: ClassVar[tuple[Metric, ...]] = (ACCURACY, UNPARSEABLE_RATE)
    primary_metric: ClassVar[str] = "accuracy"

    def __post_init__(self) -> None:
        if self.options_format not in OPTIONS_FORMATS:
            raise ValueError(f"options_format must be one of {OPTIONS_FORMATS}, got {self.options_format!r}")

    def build_request(self, sample: Sample) -> Request:
        parts = [f"Context: {sample.context}"] if sample.context else []
        parts.append(sample.question)
        if sample.choices and not sample.meta.get("options_in_question"):
            parts.append(format_options(sample.choices, self.options_format))
        suffix = self.prompt_suffix if sample.choices else self.open_prompt_suffix
        return Request("\n".join(parts) + suffix, sample.images, self.max_new_tokens)

    def parse(self, raw: str, sample: Sample) -> Parsed:
        return parse_choice(raw, sample.choices) if sample.choices else parse_open(raw)

    def score(self, sample: Sample, parsed: Parsed, raw: str) -> tuple[float | None, float | None]:
        if not sample.choices:
            return float(parsed.ok and open_answer_correct(parsed.value or "", sample.answer or "")), None
        return float(parsed.ok and parsed.value == sample.answer), None

    def normalise_answer(self, answer: str) -> str:
        """Option letters are upper-case ("b " -> "B"); open answers keep their case (compared lower-cased)."""
        answer = answer.strip()
        return answer.upper() if len(answer) == 1 else answer

    def cell_metrics(self, records: list[SampleResult]) -> list[Metric]:
        categories = sorted({r.category for r in records if r.category}) if self.per_category else []
        return [ACCURACY, UNPARSEABLE_RATE, *(ACCURACY.within(c) for c in categories)]
