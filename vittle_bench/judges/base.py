"""Judge contract: score the model's answer and the reference answer to one question on 1-10.

Judge specs: `openai:MODEL` (an LLM judge on any OpenAI-compatible endpoint, the LLaVA-Bench protocol),
`embedding` and `overlap` (offline stand-ins). A stand-in carries a non-empty `label`, which the open-ended
adapter appends to the metric name (`relative_score_embedding`, `relative_score_overlap`) so that no table
can pass its numbers off as judge scores. The `pairwise` judge (WildVision's verdicts) is no `--judge` value:
a pairwise task given `--judge openai:MODEL` loads it as `pairwise:MODEL`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

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
    review: str | None = None  # an LLM judge's written review(s), from which the scores were read

    @classmethod
    def failure(cls, error: str) -> Judgment:
        return cls(None, None, failed=True, error=error)


class Judge:
    """Base of every judge; the class attributes declare what the adapter and the runner need to know."""

    name: str  # recorded with every score
    label: ClassVar[str] = ""  # "" for an LLM judge; a stand-in's name otherwise (becomes a metric-name suffix)
    needs_target: ClassVar[bool] = False  # the spec names a model: `openai:MODEL`
    uses_cache: ClassVar[bool] = False  # takes a `cache` argument (the run's judgment cache)
    follows_rubric: ClassVar[bool] = False  # an LLM judge: a task's rubric, temperature and repeats apply
    pairwise: ClassVar[bool] = False  # scores a verdict against a baseline answer: only pairwise tasks load it

    def judge(self, sample: Sample, answer: str) -> Judgment:
        return self.judge_many([(sample, answer)])[0]

    def judge_many(self, items: list[tuple[Sample, str]]) -> list[Judgment]:
        raise NotImplementedError


JUDGES: Registry[type[Judge]] = Registry(
    "judges", ("vittle_bench.judges.overlap", "vittle_bench.judges.embedding", "vittle_bench.judges.openai",
               "vittle_bench.judges.pairwise"))


def judge_class(spec: str) -> type[Judge]:
    """The judge class a spec names (cheap: nothing loads), e.g. to label a metric before judging."""
    scheme, _, target = spec.partition(":")
    cls = JUDGES.get(scheme)
    if cls.needs_target and not target:
        raise UnknownNameError(f"judge {spec!r} needs a model, e.g. {scheme}:gpt-4o-2024-08-06")
    if target and not cls.needs_target:
        raise UnknownNameError(f"judge {scheme!r} takes no model (got {spec!r})")
    return cls


def load_judge(spec: str, **args: Any) -> Judge:
    """`openai:gpt-4o-2024-08-06` -> an OpenAIJudge for that model; `embedding` -> the offline stand-in."""
    cls = judge_class(spec)
    target = spec.partition(":")[2]
    # A judge that declares needs_target takes the model name first; the base class declares no __init__.
    return cls(target, **args) if target else cls(**args)  # type: ignore[call-arg]
