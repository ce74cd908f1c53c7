"""The LLaVA-Bench LLM judge on any OpenAI-compatible endpoint (`--judge openai:gpt-4o-2024-08-06`).

Protocol (LLaVA's llava/eval/eval_gpt_review_visual.py / eval_gpt_review_bench.py and table/rule.json, which
lmms-eval and the Vittle evaluation scripts follow): the judge sees the image's context (captions, and boxes
for LLaVA-Bench-COCO), the question, the reference answer as "Assistant 1" and the model's answer as
"Assistant 2" under the task's rubric (judges/rubrics.py), and returns the two 1-10 scores on its first line.
Relative score = 100 x mean(model) / mean(reference), computed by the open-ended adapter.

The task declares the judge setup in its YAML (rubric, temperature, repeats; recorded in manifest.json); the
defaults of our LLaVA-Bench configs are the Vittle evaluation's: temperature 0 and, for LLaVA-Bench-COCO,
three reviews per answer (scripts/_eval_oqa.sh), here averaged per answer.

Where we deliberately differ from those scripts: they turn an unreadable review into the pair (-1, -1) and
average it in; here a judgment that fails — an unreadable review (see `parse_score_pair`; asked again only if
`parse_retries` > 0), a request that failed after its retries, or any of its repeats failing — is a failed
Judgment: counted as `judge_failed`, never scored, never imputed. Every successful review is cached (see
judges/cache.py).

Judge args: base_url, api_key (default: $OPENAI_BASE_URL / $OPENAI_API_KEY), concurrency, max_retries,
parse_retries (0), timeout, backoff, temperature, repeats, rubric, max_tokens (1024), cache (SQLite path).
"""

from __future__ import annotations

import logging
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

from vittle_bench.errors import ConfigError
from vittle_bench.judges.base import JUDGES, Judge, Judgment
from vittle_bench.judges.cache import JudgmentCache, judgment_key
from vittle_bench.judges.rubrics import AUTO, SYSTEM_PROMPT, check_rubric, judge_prompt
from vittle_bench.openai_client import ChatClient, RequestFailed, public_url
from vittle_bench.schema import Sample

log = logging.getLogger(__name__)


def parse_score_pair(review: str) -> tuple[float, float] | None:
    """(Assistant 1 score, Assistant 2 score) by LLaVA's rule (`parse_score` in its review scripts, also
    Vittle's and lmms-eval's): the first line of the review holds exactly the two scores, separated by a space
    or a comma ("8 7", "8,7"). Anything else — prose around the scores, markdown, "8/10", labelled scores on
    two lines, one or three numbers — is unreadable (None): never a guess.

    Deliberate differences, both visible as `judge_failed` or accepted replies in the run's counts: the review
    is stripped before its first line is taken and runs of spaces count as one separator (as lmms-eval does;
    LLaVA's literal `split(' ')` rejects "8, 7", which becomes "8  7"); and the scores must be finite and within
    0-10, the rubric's scale (LLaVA takes any float, so "85 70" on a 1-100 scale would enter its mean).
    """
    parts = review.strip().split("\n", 1)[0].replace(",", " ").split()
    if len(parts) != 2:
        return None
    try:
        scores = float(parts[0]), float(parts[1])
    except ValueError:
        return None
    return scores if all(math.isfinite(s) and 0 <= s <= 10 for s in scores) else None


@JUDGES.register("openai")
class OpenAIJudge(Judge):
    needs_target: ClassVar[bool] = True
    uses_cache: ClassVar[bool] = True
    follows_rubric: ClassVar[bool] = True
    protocol: ClassVar[str] = "llava-bench/1"  # part of every cache key: another protocol never hits these

    def __init__(self, model: str, base_url: str | None = None, api_key: str | None = None, concurrency: int = 8,
                 max_retries: int = 4, parse_retries: int = 0, timeout: float = 120.0, backoff: float = 1.0,
                 temperature: float = 0.0, repeats: int = 1, rubric: str = AUTO, max_tokens: int = 1024,
                 cache: str | None = None) -> None:
        if int(repeats) < 1:
            raise ConfigError(f"judge repeats must be at least 1, got {repeats!r}")
        self.model, self.name = model, f"openai:{model}"
        self.client = ChatClient(base_url, api_key, float(timeout), int(max_retries), float(backoff))
        self.concurrency, self.parse_retries = max(1, int(concurrency)), max(0, int(parse_retries))
        self.temperature, self.max_tokens, self.repeats = float(temperature), int(max_tokens), int(repeats)
        self.rubric = check_rubric(rubric)
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
        prompt = judge_prompt(sample.question, sample.answer or "", answer, sample.context, self.rubric)
        return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": prompt}]

    def parse_review(self, review: str) -> tuple[float, float] | None:
        """(reference score, model score) from a review, or None when it cannot be read."""
        return parse_score_pair(review)

    def _key(self, messages: list[dict[str, Any]], repeat: int) -> str:
        """The cache key of one review; repeat 0 keeps the key a single review has always had."""
        return judgment_key(self.identity if repeat == 0 else {**self.identity, "repeat": repeat}, messages)

    def _ask(self, messages: list[dict[str, Any]]) -> tuple[str, tuple[float, float]] | str:
        """(review, (reference score, model score)) or the reason the review failed."""
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
            log.warning("%s: unreadable review (attempt %d/%d): %r", self.name, attempt + 1,
                        self.parse_retries + 1, review[:80])
        return f"unreadable review ({self.parse_retries + 1} attempt(s)): {review[:80]!r}"

    def judge_many(self, items: list[tuple[Sample, str]]) -> list[Judgment]:
        """Judgments in order: each answer reviewed `repeats` times (cache hits first, the rest concurrently,
        bounded by `concurrency`) and its scores averaged over the reviews; one failed review fails it."""
        reviews: dict[int, list[tuple[float, float, str] | str]] = {}
        todo: list[tuple[int, str, list[dict[str, Any]]]] = []
        for i, (sample, answer) in enumerate(items):
            if not sample.answer:
                reviews[i] = ["no reference answer"]
                continue
            messages = self.messages(sample, answer)
            reviews[i] = []
            for repeat in range(self.repeats):
                key = self._key(messages, repeat)
                hit = self.cache.get(key)
                if hit is None:
                    todo.append((i, key, messages))
                    continue
                reviews[i].append((hit[2], hit[1], hit[0]))
                self._count("cached")
        if todo:
            with ThreadPoolExecutor(max_workers=min(self.concurrency, len(todo))) as pool:
                outcomes = list(pool.map(lambda job: self._ask(job[2]), todo))
            for (i, key, _), outcome in zip(todo, outcomes):
                if isinstance(outcome, str):
                    self._count("failed")
                    log.warning("%s: review of sample %s failed: %s", self.name, items[i][0].sample_id, outcome)
                    reviews[i].append(outcome)
                    continue
                review, (reference_score, model_score) = outcome
                self.cache.put(key, self.name, review, model_score, reference_score)
                self._count("judged")
                reviews[i].append((reference_score, model_score, review))
        return [_combined(reviews[i], self.repeats) for i in range(len(items))]


def _combined(reviews: list[tuple[float, float, str] | str], repeats: int) -> Judgment:
    """One judgment from an answer's reviews: the mean of each score and the reviews' text (numbered when
    there are several), or a failure naming what failed."""
    failures = [r for r in reviews if isinstance(r, str)]
    if failures:
        prefix = "" if repeats == 1 else f"{len(failures)} of {repeats} reviews failed: "
        return Judgment.failure(prefix + failures[0])
    done = [r for r in reviews if not isinstance(r, str)]
    text = done[0][2] if len(done) == 1 else "\n\n".join(f"[review {k} of {len(done)}]\n{r[2]}"
                                                           for k, r in enumerate(done, start=1))
    return Judgment(sum(r[1] for r in done) / len(done), sum(r[0] for r in done) / len(done), review=text)
