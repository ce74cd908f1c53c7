"""Gallery cards: one sample under one condition, with its clean twin, every model's answers and the images.

A card holds only data; the templates render every text field escaped (autoescape), so a model's answer, a
question or a dataset field is shown as text, whatever it contains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from vittle_bench.report.outcomes import BETTER, WORSE, word_diff
from vittle_bench.report.thumbnails import Reproduced

RecordKey = tuple[str, str, str, str]  # (model, task, condition, sample id)


@dataclass(frozen=True)
class Answer:
    """One model's answers to the sample, clean and under the shift."""

    model: str
    clean_raw: str
    clean_parsed: str
    clean_score: str
    raw: str
    parsed: str
    score: str
    reference_score: str  # judged tasks: the judge's score of the reference answer under the shift
    error: str
    outcome: str  # worse / better / same / unscored
    clean_review: str  # an LLM judge's written review of the clean answer ("" for other scorers)
    review: str  # and of the answer under the shift


@dataclass(frozen=True)
class Card:
    task: str
    condition: str
    shift: str
    severity: int
    kind: str
    category: str
    sample_id: str
    reference: str
    question_clean: str
    question_shifted: tuple[tuple[str, bool], ...]  # (text, changed) runs
    clean_images: tuple[str, ...]
    shifted_images: tuple[str, ...]
    images_match: bool | None  # the reproduced shifted input equals what the model saw (None: not checked)
    same_input_for_all: bool  # every model's record has the same input hash
    answers: tuple[Answer, ...]
    worse: tuple[str, ...]  # models worse under the shift
    better: tuple[str, ...]
    loser: str = ""  # the model-vs-model page: "A" or "B"


def _text(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


def _score(value: object, binary: bool) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    number = float(value)  # type: ignore[arg-type]
    if binary:
        return "right" if number > 0.5 else "wrong"
    return f"{number:.2f}".rstrip("0").rstrip(".")


def _outcome(clean: dict | None, shifted: dict | None) -> str:
    if not clean or not shifted or clean.get("score") is None or shifted.get("score") is None:
        return "unscored"
    a, b = float(clean["score"]), float(shifted["score"])
    if math.isnan(a) or math.isnan(b):
        return "unscored"
    return WORSE if b < a else BETTER if b > a else "same"


class CardMaker:
    """Builds cards from the runs' records, the models in report order and the reproduced images."""

    def __init__(self, records: pd.DataFrame, models: list[str], binary_tasks: set[str], images: Reproduced) -> None:
        self.by_key: dict[RecordKey, dict] = {
            (r["model"], r["task"], r["condition"], r["sample_id"]): r for r in records.to_dict("records")}
        self.models, self.binary_tasks, self.images = models, binary_tasks, images

    def card(self, task: str, condition: str, sample_id: str, loser: str = "") -> Card:
        binary = task in self.binary_tasks
        answers, hashes, first = [], set(), None
        for model in self.models:
            shifted = self.by_key.get((model, task, condition, sample_id))
            clean = self.by_key.get((model, task, "clean", sample_id))
            if shifted is None:
                continue
            first = first or shifted
            hashes.add(shifted.get("input_hash"))
            answers.append(Answer(
                model, _text(clean and clean.get("raw_output")), _text(clean and clean.get("parsed")),
                _score(clean and clean.get("score"), binary), _text(shifted.get("raw_output")),
                _text(shifted.get("parsed")), _score(shifted.get("score"), binary),
                "" if binary else _score(shifted.get("reference_score"), False), _text(shifted.get("error")),
                _outcome(clean, shifted), _text(clean and clean.get("judge_review")),
                _text(shifted.get("judge_review"))))
        assert first is not None, (task, condition, sample_id)  # cards are only made for recorded samples
        clean_first = next((self.by_key[(m, task, "clean", sample_id)] for m in self.models
                            if (m, task, "clean", sample_id) in self.by_key), None)
        run = int(first["run"])
        question_clean = _text(clean_first and clean_first.get("prompt"))
        shifted_prompt = _text(first.get("prompt"))
        return Card(
            task, condition, _text(first.get("shift")), int(first.get("severity") or 0), _text(first.get("shift_kind")),
            _text(first.get("category")), sample_id, _text(first.get("answer")), question_clean,
            tuple(word_diff(question_clean, shifted_prompt)) if clean_first else ((shifted_prompt, False),),
            self.images.images.get((run, task, "clean", sample_id), ()),
            self.images.images.get((run, task, condition, sample_id), ()),
            self.images.matches.get((run, task, condition, sample_id)), len(hashes) == 1,
            tuple(answers), tuple(a.model for a in answers if a.outcome == WORSE),
            tuple(a.model for a in answers if a.outcome == BETTER), loser)
