"""Judge contract: score the model's answer and the reference answer to one question on 1-10.

Judge specs: `openai:MODEL` (an LLM judge on any OpenAI-compatible endpoint, the LLaVA-Bench protocol),
`embedding` and `overlap` (offline stand-ins). A stand-in carries a non-empty `label`, which the open-ended
adapter appends to the metric name (`relative_score_embedding`, `relative_score_overlap`) so that no table
can pass its numbers off as judge scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from vittle_bench.registry import Registry, UnknownNameError
from vittle_bench.schema import Sample


@dataclass(frozen=True)
class Judgment:
    """Scores on the rubric's 1-10 scale. `failed` judgments carry no scores (None, never a default) and a
    short `error` saying why; they are counted per cell as `judge_failed` and left out of every mean."""

    model_score: float | None
    reference_score: float | None
    failed: bool = False
    error: str | None = None

    @classmethod
    def failure(cls, error: str) -> "Judgment":
        return cls(None, None, failed=True, error=error)


class Judge(Protocol):
    name: str  # recorded with every score
    label: str  # "" for an LLM judge; the stand-in's name otherwise (becomes a metric-name suffix)

    def judge(self, sample: Sample, answer: str) -> Judgment: ...

    def judge_many(self, items: list[tuple[Sample, str]]) -> list[Judgment]: ...


JUDGES: Registry[type] = Registry("judges", ("vittle_bench.judges.reference_overlap", "vittle_bench.judges.embedding",
                                             "vittle_bench.judges.openai_compat"))


def judge_class(spec: str) -> type:
    """The judge class a spec names (cheap: nothing loads), e.g. to label a metric before judging."""
    scheme, _, target = spec.partition(":")
    cls = JUDGES.get(scheme)
    if getattr(cls, "needs_target", False) and not target:
        raise UnknownNameError(f"judge {spec!r} needs a model, e.g. {scheme}:gpt-4o-2024-08-06")
    if target and not getattr(cls, "needs_target", False):
        raise UnknownNameError(f"judge {scheme!r} takes no model (got {spec!r})")
    return cls


def load_judge(spec: str, **args: Any) -> Judge:
    """`openai:gpt-4o-2024-08-06` -> an OpenAIJudge for that model; `embedding` -> the offline stand-in."""
    cls = judge_class(spec)
    target = spec.partition(":")[2]
    return cls(target, **args) if target else cls(**args)


def judge_sequentially(judge: Judge, items: list[tuple[Sample, str]]) -> list[Judgment]:
    """`judge_many` for judges with nothing to gain from batching."""
    return [judge.judge(sample, answer) for sample, answer in items]
