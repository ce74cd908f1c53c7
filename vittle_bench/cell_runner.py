"""One batch of one cell, in the order that lets a rerun cost nothing:

    source sample -> answer key (before shifting) -> cached?  yes: the stored answer, prompt and input hash
                                                             no:  shift -> request -> model.generate -> store
                  -> adapter.parse / score -> SampleResult

`CellRunner.look_up` keys and looks up a batch; `CellRunner.prepare` shifts what the look-up left and builds
its requests (the costly part; `prefetch.py` runs both ahead of generation); `CellRunner.finish` generates,
records and scores. A rule-based adapter scores from the ground truth, which no shift may change
(the engine enforces it), so a cached answer is scored on the source sample and nothing is shifted; a judged
adapter's judge reads the shifted sample (question, image), so its cached answers are shifted for scoring.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import cast

from vittle_bench.adapters import TaskAdapter
from vittle_bench.cache import AnswerCache, CachedAnswer, answer_key
from vittle_bench.models.base import Model
from vittle_bench.run_plan import RunOptions
from vittle_bench.schema import Parsed, Request, Sample, SampleResult, Score
from vittle_bench.shifts import ShiftCondition
from vittle_bench.shifts.engine import ShiftEngine


class SampleError(RuntimeError):
    """Raised under --fail-fast for the first sample that could not be evaluated."""


@dataclass(frozen=True)
class Prepared:
    """A sample on its way to the model: its answer key and cached answer, its shifted sample and request, or
    the reason it could not be prepared."""

    sample: Sample
    key: str = ""  # "" when the source sample's request cannot be built (then nothing is cached)
    cached: CachedAnswer | None = None
    shifted: Sample | None = None
    request: Request | None = None
    error: str | None = None

    @property
    def needs_shift(self) -> bool:
        return self.error is None and self.shifted is None


@dataclass(frozen=True)
class Batch:
    """One batch of a cell, looked up (and, once prepared, shifted)."""

    adapter: TaskAdapter
    condition: ShiftCondition
    items: list[Prepared]

    @property
    def needs_shift(self) -> bool:
        return any(p.needs_shift for p in self.items)


class CellRunner:
    """Runs one model over its share of one task's samples under one shift condition, batch by batch."""

    def __init__(self, model: Model, cache: AnswerCache, engine: ShiftEngine, options: RunOptions,
                 counters: dict[str, int], reader: AnswerCache | None = None) -> None:
        """`reader`: the connection `look_up` reads the answer cache through (`cache` if not given), for a
        look-up that runs in another thread than `finish`, which writes through `cache`."""
        self.model, self.cache, self.engine, self.options, self.counters = model, cache, engine, options, counters
        self.reader = reader or cache

    def key(self, adapter: TaskAdapter, sample: Sample, condition: ShiftCondition) -> str:
        """The answer key of a loadable sample under `condition`, from the source sample (nothing is shifted)."""
        try:
            source = adapter.build_request(sample)
        except Exception:  # noqa: BLE001 - the shifted sample's request fails alike and is recorded then
            return ""
        return answer_key(self.model.fingerprint, source, condition.identity(self.options.seed, sample))

    def look_up(self, adapter: TaskAdapter, samples: Sequence[Sample], condition: ShiftCondition) -> Batch:
        """The batch keyed and looked up in the answer cache; only what is not cached (or is judged) is left to
        shift."""
        items = [Prepared(s, error=f"load: {s.load_error}") if s.load_error else Prepared(s, self.key(adapter, s,
                                                                                                 condition))
                 for s in samples]
        found = {} if self.options.fresh else self.reader.get_many([p.key for p in items if p.key])
        items = [replace(p, cached=found.get(p.key)) for p in items]
        if not adapter.judged:
            items = [replace(p, shifted=p.sample) if p.cached is not None else p for p in items]
        return Batch(adapter, condition, items)

    def prepare(self, batch: Batch) -> Batch:
        """The batch's samples shifted and their requests built, where the look-up left them to shift."""
        todo = [p for p in batch.items if p.needs_shift]
        shifted = dict(zip(map(id, todo), self.engine.apply_many(batch.condition, [p.sample for p in todo],
                                                                 self.options.seed)))
        return replace(batch, items=[_prepare_one(batch.adapter, p, shifted[id(p)]) if id(p) in shifted else p
                                     for p in batch.items])

    def finish(self, batch: Batch) -> list[SampleResult]:
        """Generate what is not cached, then record and score the batch."""
        items = batch.items
        todo = [i for i, p in enumerate(items) if p.cached is None and p.request is not None]
        late = {} if self.options.fresh else self.cache.get_many([items[i].key for i in todo if items[i].key])
        self.counters["cached"] += sum(p.cached is not None for p in items) + len(late)
        missing = [i for i in todo if items[i].key not in late]
        fresh: dict[int, str | Exception] = {}
        if missing:
            self.model.ensure_loaded()
            fresh = dict(zip(missing, self._generate_isolated([cast(Request, items[i].request) for i in missing])))
            self.counters["generated"] += len(missing)
        answers: dict[int, CachedAnswer | Exception] = {i: late[items[i].key] for i in todo if i not in fresh}
        for i, output in fresh.items():
            answers[i] = output if isinstance(output, Exception) else CachedAnswer(
                output, cast(Sample, items[i].shifted).content_hash(), cast(Request, items[i].request).prompt)
        self.cache.put_many({items[i].key: a for i, a in answers.items()
                             if i in fresh and items[i].key and isinstance(a, CachedAnswer)})
        records = [self._record(batch, p, p.cached or answers.get(i)) for i, p in enumerate(items)]
        self._score(batch.adapter, records, [p.shifted for p in items])
        if self.options.fail_fast:
            failed = next((r for r in records if r.error), None)
            if failed:
                raise SampleError(f"{failed.task} / {batch.condition.label} / sample {failed.sample_id}: "
                                  f"{failed.error}")
        return records

    def _generate_isolated(self, requests: list[Request]) -> list[str | Exception]:
        """The batch's answers; when the batch fails, each request alone, so only the failing ones are lost."""
        try:
            return list(self.model.generate(requests))
        except Exception:  # noqa: BLE001 - isolate the failing sample(s): retry one by one
            return [self._generate_one(request) for request in requests]

    def _generate_one(self, request: Request) -> str | Exception:
        try:
            return self.model.generate([request])[0]
        except Exception as exc:  # noqa: BLE001 - recorded per sample, the run goes on
            return exc

    def _record(self, batch: Batch, prepared: Prepared, answer: CachedAnswer | Exception | None) -> SampleResult:
        sample, shifted, condition = prepared.sample, prepared.shifted, batch.condition
        seen = answer if isinstance(answer, CachedAnswer) else None
        record = SampleResult(
            model=self.model.name, task=sample.task, shift=condition.name, shift_kind=condition.kind,
            severity=condition.severity, condition=condition.label, sample_id=sample.sample_id,
            input_hash=seen.input_hash if seen else shifted.content_hash() if shifted else "",
            prompt=seen.prompt if seen else prepared.request.prompt if prepared.request else "",
            answer=sample.answer, raw_output=None, parsed=None, parse_ok=False, score=None,
            category=sample.category, scorer=batch.adapter.scorer, error=prepared.error, cache_key=prepared.key,
            downscaled_from=sample.meta.get("downscaled_from"))
        if isinstance(answer, Exception):
            record.error = f"generate: {type(answer).__name__}: {answer}"
        elif seen is not None and shifted is not None:
            record.raw_output = seen.output
            parsed = batch.adapter.parse(seen.output, shifted)
            record.parsed, record.parse_ok = parsed.value, parsed.ok
        return record

    @staticmethod
    def _score(adapter: TaskAdapter, records: list[SampleResult], shifted: list[Sample | None]) -> None:
        """Score the batch's answered records in one call (a judged task judges them concurrently)."""
        todo = [(r, s) for r, s in zip(records, shifted) if r.error is None and r.raw_output is not None and s]
        try:
            scores = adapter.score_batch([(s, Parsed(r.parsed, r.parse_ok), r.raw_output or "") for r, s in todo])
        except Exception as exc:  # noqa: BLE001 - e.g. a judge that cannot be reached: recorded per sample
            for record, _ in todo:
                record.error = f"score: {type(exc).__name__}: {exc}"
            return
        for (record, _), scored in zip(todo, scores):
            record.score, record.reference_score, record.judge_review = Score(*scored)


def _prepare_one(adapter: TaskAdapter, prepared: Prepared, shifted: Sample | Exception) -> Prepared:
    """The sample's shifted request, or why there is none (a bad sample must not stop the run)."""
    if isinstance(shifted, Exception):
        return replace(prepared, error=f"shift: {type(shifted).__name__}: {shifted}")
    if prepared.cached is not None:  # a judged task's cached answer: shifted for its judge only
        return replace(prepared, shifted=shifted)
    try:
        return replace(prepared, shifted=shifted, request=adapter.build_request(shifted))
    except Exception as exc:  # noqa: BLE001 - recorded per sample
        return replace(prepared, error=f"request: {type(exc).__name__}: {exc}")
