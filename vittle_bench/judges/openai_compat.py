"""The LLaVA-Bench LLM judge on any OpenAI-compatible endpoint (`--judge openai:gpt-4o-2024-08-06`).

Protocol (LLaVA's llava/eval/eval_gpt_review_bench.py and table/rule.json, which lmms-eval follows): the judge
sees the image's context (caption), the question, the reference answer as "Assistant 1" and the model's
answer as "Assistant 2", and returns the two 1-10 scores on its first line. Relative score = 100 x mean(model)
/ mean(reference), computed by the open-ended adapter.

Where we deliberately differ from those scripts: they turn an unparseable review into the pair (-1, -1) and
average it in; here an unparseable review is asked again (`parse_retries` times; the rubric's temperature is
0.2, so a new review can differ), and a judgment that still fails — unparseable, or a request that failed
after its retries — is a failed Judgment: counted as `judge_failed`, never scored, never imputed.
Every successful judgment is cached (see judges/cache.py).

Judge args: base_url, api_key (default: $OPENAI_BASE_URL / $OPENAI_API_KEY), concurrency, max_retries,
parse_retries, timeout, backoff, temperature (0.2, as the rubric), max_tokens (1024), cache (SQLite path).
"""

from __future__ import annotations

import logging
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

from vittle_bench.judges.base import JUDGES, Judgment
from vittle_bench.judges.cache import JudgmentCache, judgment_key
from vittle_bench.models.openai_compat import ChatClient, RequestFailed, public_url
from vittle_bench.schema import Sample

log = logging.getLogger(__name__)

SYSTEM_PROMPT = "You are a helpful and precise assistant for checking the quality of the answer."
_RATE_AND_FORMAT = (
    "Please rate the helpfulness, relevance, accuracy, level of details of their responses. Each assistant "
    "receives an overall score on a scale of 1 to 10, where a higher score indicates better overall performance.\n"
    "Please first output a single line containing only two values indicating the scores for Assistant 1 and 2, "
    "respectively. The two scores are separated by a space.\n"
    "In the subsequent line, please provide a comprehensive explanation of your evaluation, avoiding any potential "
    "bias and ensuring that the order in which the responses were presented does not affect your judgment.")
# LLaVA-Bench's rubric (rule.json, `llava_bench_*`), used when the sample carries a caption ...
RUBRIC_WITH_CONTEXT = (
    "We would like to request your feedback on the performance of two AI assistants in response to the user "
    "question displayed above. The user asks the question on observing an image. For your reference, the visual "
    "content in the image is represented with a few sentences describing the image. \n" + _RATE_AND_FORMAT)
# ... and its `default` rule when there is none to show.
RUBRIC_WITHOUT_CONTEXT = (
    "We would like to request your feedback on the performance of two AI assistants in response to the user "
    "question displayed above.\n" + _RATE_AND_FORMAT)

_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")
_OUT_OF_TEN = re.compile(r"\s*(?:/|out\s+of)\s*10(?:\.0+)?\b", re.IGNORECASE)
_LABELLED = {k: re.compile(rf"assistant\s*{k}\b[^0-9\n]{{0,40}}?([-+]?\d+(?:\.\d+)?)", re.IGNORECASE) for k in (1, 2)}


def judge_prompt(question: str, reference: str, answer: str, context: str | None) -> str:
    """The user message of one judgment (LLaVA-Bench layout: reference = Assistant 1, model = Assistant 2)."""
    head = f"[Context]\n{context}\n\n" if context else ""
    rubric = RUBRIC_WITH_CONTEXT if context else RUBRIC_WITHOUT_CONTEXT
    return (f"{head}[Question]\n{question}\n\n"
            f"[Assistant 1]\n{reference}\n\n[End of Assistant 1]\n\n"
            f"[Assistant 2]\n{answer}\n\n[End of Assistant 2]\n\n"
            f"[System]\n{rubric}\n\n")


def _in_range(values: list[str]) -> tuple[float, float] | None:
    scores = tuple(float(v) for v in values)
    return scores if len(scores) == 2 and all(0 <= s <= 10 for s in scores) else None  # type: ignore[return-value]


def parse_score_pair(review: str) -> tuple[float, float] | None:
    """(Assistant 1 score, Assistant 2 score) from a review, or None when it cannot be read unambiguously.

    Rules, in order: (1) the first line that contains a digit, with markdown and "/10" / "out of 10" removed,
    holds exactly two numbers ("8 7", "8, 7", "**8/10 7/10**", "Scores: 8 7"); (2) otherwise the first
    number after "Assistant 1" and after "Assistant 2" ("Assistant 1: 8\\nAssistant 2: 7"). Scores must lie
    in [0, 10] (0 is outside the rubric but judges give it to empty answers; dropping it would bias the mean
    upwards). Anything else — one number, three numbers, a 1-100 scale — is unparseable, never guessed."""
    cleaned = _OUT_OF_TEN.sub("", review.replace("*", "").replace("#", "").replace("`", ""))
    first = next((line for line in cleaned.splitlines() if any(c.isdigit() for c in line)), "")
    numbers = _NUMBER.findall(first)
    if len(numbers) == 2 and not re.search(r"assistant\s*[12]\b", first, re.IGNORECASE):
        return _in_range(numbers)
    labelled = [m.group(1) for m in (_LABELLED[k].search(cleaned) for k in (1, 2)) if m]
    return _in_range(labelled) if len(labelled) == 2 else None


@JUDGES.register("openai")
class OpenAIJudge:
    label: ClassVar[str] = ""  # a real LLM judge: its metric is `relative_score`
    needs_target: ClassVar[bool] = True
    uses_cache: ClassVar[bool] = True
    protocol: ClassVar[str] = "llava-bench/1"  # part of every cache key: another protocol never hits these

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None, concurrency: int = 8,
                 max_retries: int = 4, parse_retries: int = 2, timeout: float = 120.0, backoff: float = 1.0,
                 temperature: float = 0.2, max_tokens: int = 1024, cache: str | None = None) -> None:
        self.model, self.name = model, f"openai:{model}"
        self.client = ChatClient(base_url, api_key, float(timeout), int(max_retries), float(backoff))
        self.concurrency, self.parse_retries = max(1, int(concurrency)), max(0, int(parse_retries))
        self.temperature, self.max_tokens = float(temperature), int(max_tokens)
        self.cache = JudgmentCache(cache)
        # What the cache key and the record say about this judge (no key, no credentials in the URL).
        self.identity = {"judge": self.name, "base_url": public_url(self.client.base_url),
                         "temperature": self.temperature, "max_tokens": self.max_tokens, "protocol": self.protocol}
        self.stats = {"judged": 0, "cached": 0, "failed": 0, "unparseable_reviews": 0}
        self._lock = threading.Lock()

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.stats[key] += n

    def messages(self, sample: Sample, answer: str) -> list[dict[str, Any]]:
        return [{"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": judge_prompt(sample.question, sample.answer or "", answer, sample.context)}]

    def parse_review(self, review: str) -> tuple[float, float] | None:
        """(reference score, model score) from a review, or None when it cannot be read."""
        return parse_score_pair(review)

    def _ask(self, messages: list[dict[str, Any]]) -> tuple[str, tuple[float, float]] | str:
        """(review, (reference score, model score)) or the reason the judgment failed."""
        payload = {"model": self.model, "messages": messages, "temperature": self.temperature,
                   "max_tokens": self.max_tokens}
        review = ""
        for attempt in range(self.parse_retries + 1):
            try:
                review = self.client.complete(payload)
            except RequestFailed as exc:
                return f"request failed: {exc}"
            pair = self.parse_review(review)
            if pair is not None:
                return review, pair
            self._count("unparseable_reviews")
            log.warning("%s: unparseable review (attempt %d/%d): %r", self.name, attempt + 1,
                        self.parse_retries + 1, review[:80])
        return f"unparseable review after {self.parse_retries + 1} attempts: {review[:80]!r}"

    def judge(self, sample: Sample, answer: str) -> Judgment:
        return self.judge_many([(sample, answer)])[0]

    def judge_many(self, items: list[tuple[Sample, str]]) -> list[Judgment]:
        """Judgments in order: cache hits first, the rest concurrently (bounded by `concurrency`)."""
        judgments: list[Judgment | None] = [None] * len(items)
        todo: list[tuple[int, str, list[dict[str, Any]]]] = []
        for i, (sample, answer) in enumerate(items):
            if not sample.answer:
                judgments[i] = Judgment.failure("no reference answer")
                continue
            messages = self.messages(sample, answer)
            key = judgment_key(self.identity, messages)
            hit = self.cache.get(key)
            if hit is not None:
                judgments[i] = Judgment(hit[1], hit[2])
                self._count("cached")
            else:
                todo.append((i, key, messages))
        if todo:
            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(todo))) as pool:
                outcomes = list(pool.map(lambda job: self._ask(job[2]), todo))
            for (i, key, _), outcome in zip(todo, outcomes):
                if isinstance(outcome, str):
                    judgments[i] = Judgment.failure(outcome)
                    self._count("failed")
                    log.warning("%s: judgment of sample %s failed: %s", self.name, items[i][0].sample_id, outcome)
                    continue
                review, (reference_score, model_score) = outcome
                self.cache.put(key, self.name, review, model_score, reference_score)
                judgments[i] = Judgment(model_score, reference_score)
                self._count("judged")
        return [j for j in judgments if j is not None]
