"""Typed records that flow through the pipeline: dataset row -> Sample -> Request -> raw output -> SampleResult.

Tasks, shifts and models only talk to each other through these types, which is what keeps them independent.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from PIL import Image


@dataclass(frozen=True)
class Sample:
    """One evaluation item, independent of how it will be prompted or shifted.

    `answer` is the gold label (closed-form letter, POPE yes/no) or the reference answer (open-ended).
    `choices` holds the options of a multiple-choice item, in order (letters A, B, ... by position).
    `images` are prepared RGB: every loader passes each image through vittle_bench.images.prepare_image once,
    so every condition (clean included) starts from the same pixels and differs only by its shift.
    """

    task: str
    sample_id: str
    question: str
    images: tuple[Image.Image, ...] = ()
    answer: str | None = None
    choices: tuple[str, ...] = ()
    category: str | None = None
    context: str | None = None  # e.g. the caption a judge sees, or a ScienceQA hint
    meta: dict[str, Any] = field(default_factory=dict)
    load_error: str | None = None  # set by loaders for an unreadable row: recorded and counted, never generated

    def with_changes(self, **changes: Any) -> Sample:
        return replace(self, **changes)

    def content_hash(self) -> str:
        """Hash of everything a model sees (images' pixels, question, choices): the cache key's input part."""
        h = hashlib.sha256()
        for text in (self.question, "\x1f".join(self.choices), self.context or ""):
            h.update(text.encode("utf-8"))
            h.update(b"\x1e")
        for image in self.images:
            h.update(image_digest(image).encode())
        return h.hexdigest()[:32]


def image_digest(image: Image.Image) -> str:
    """Content digest of an image's decoded pixels, mode and size (not of its file encoding)."""
    h = hashlib.sha256()
    h.update(f"{image.mode}:{image.size}".encode())
    h.update(image.tobytes())
    return h.hexdigest()[:32]


def image_to_png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


@dataclass(frozen=True)
class Request:
    """What a model is asked: the images and the fully built user prompt (the model adds its chat template)."""

    prompt: str
    images: tuple[Image.Image, ...] = ()
    max_new_tokens: int = 32


@dataclass(frozen=True)
class Parsed:
    """A task's reading of a raw output. `value` is None exactly when `ok` is False (never a guessed default)."""

    value: str | None
    ok: bool


class Score(NamedTuple):
    """An adapter's scoring of one answer. `reference_score` is the judge's score of the reference answer and
    `review` the judge's written review (judged tasks only), kept in the record so a reader can check the
    scores against the text they were read from."""

    score: float | None
    reference_score: float | None = None
    review: str | None = None


@dataclass
class SampleResult:
    """One line of samples.jsonl: one model x task x shift x severity x sample."""

    model: str
    task: str
    shift: str
    shift_kind: str
    severity: int
    sample_id: str
    input_hash: str
    prompt: str
    answer: str | None
    raw_output: str | None
    parsed: str | None
    parse_ok: bool
    score: float | None
    category: str | None = None
    scorer: str | None = None
    reference_score: float | None = None  # open-ended: the judge's score of the reference answer
    error: str | None = None
    cache_key: str = ""
    condition: str = ""  # the full condition label ("frost@3+keyboard@1"): the cell's key, unique per condition
    downscaled_from: list | None = None  # per image, its original [width, height] when loading reduced it
    judge_review: str | None = None  # an LLM judge's written review(s) of the answer, as the judge wrote them

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class CellResult:
    """One row of results.csv (long form); results.csv adds the metric's unit and direction from its
    declaration, so what a number means travels with it."""

    model: str
    task: str
    shift: str
    shift_kind: str
    severity: int
    metric: str
    value: float
    ci_low: float | None
    ci_high: float | None
    n: int
    condition: str = ""  # the full condition label: `shift` and `severity` alone do not tell joint conditions apart
    primary: bool = False  # the task's headline metric
    ci_undefined: int = 0  # bootstrap draws in which the metric was undefined (left out of the interval)


KINDS = ("clean", "image", "text", "joint", "domain")  # a condition's `shift_kind`, in display order

RESULT_COLUMNS = ["model", "task", "shift", "shift_kind", "severity", "metric", "value", "ci_low", "ci_high", "n",
                  "condition", "unit", "higher_is_better", "primary", "ci_undefined"]
