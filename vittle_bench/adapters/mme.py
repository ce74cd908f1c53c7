"""MME (Fu et al., 2023): yes/no questions, two per image, scored with MME's own rule.

Per category: accuracy (share of questions right) and accuracy+ (share of images with *both* questions
right); the category score is 100 x accuracy + 100 x accuracy+ (0-200). The perception score sums the ten
perception categories (max 2000), the cognition score the four cognition categories (max 800). This is the
MME authors' calculation.py as lmms-eval reimplements it (mme_aggregate_results). Pairs are formed by
(category, image); an image left with one question (e.g. by --limit) counts in accuracy, not in accuracy+.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from vittle_bench.adapters.base import TASK_ADAPTERS
from vittle_bench.adapters.yes_no import YesNoAdapter
from vittle_bench.metrics.base import Metric
from vittle_bench.metrics.definitions import (
    ACCURACY,
    ACCURACY_PLUS,
    MME_CATEGORY_SCORE,
    MME_COGNITION,
    MME_PERCEPTION,
    UNPARSEABLE_RATE,
)
from vittle_bench.metrics.stats import MetricValue, bootstrap_metrics
from vittle_bench.schema import Parsed, Sample, SampleResult

PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork",
              "OCR")
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")


def parse_yes_no(raw: str) -> Parsed:
    """MME's rule (the authors' calculation.py, as in lmms-eval's parse_pred_ans): lower-case, strip, drop
    every '.'; the whole answer "yes"/"no" (or "y"/"n") is that answer; otherwise "yes" if "yes" occurs in
    the first four characters, else "no" if "no" occurs there ("not sure" and "none" read as no). Anything
    else is MME's "other": unparseable here, and wrong in every metric, as in MME."""
    text = raw.lower().strip().replace(".", "")
    if text in ("yes", "no"):
        return Parsed(text, True)
    if len(text) == 1:
        return Parsed({"y": "yes", "n": "no"}[text], True) if text in "yn" else Parsed(None, False)
    head = text[:4]
    if "yes" in head:
        return Parsed("yes", True)
    if "no" in head:
        return Parsed("no", True)
    return Parsed(None, False)


def pair_key(sample_id: str) -> str:
    """The image a question belongs to: the MME row format writes sample_id = f"{question_id}#{row}"."""
    return sample_id.rsplit("#", 1)[0]


def _units(categories: list[str], pairs: list[str], correct: list[bool]):
    """Per image (category, pair key): category index, number of questions, number answered right."""
    names = sorted(set(categories))
    index: dict[tuple[str, str], int] = {}
    for cat, key in zip(categories, pairs):
        index.setdefault((cat, key), len(index))
    cat_of = np.array([names.index(cat) for cat, _ in index], dtype=int)
    n_q = np.zeros(len(index))
    n_ok = np.zeros(len(index))
    for cat, key, ok in zip(categories, pairs, correct):
        n_q[index[(cat, key)]] += 1
        n_ok[index[(cat, key)]] += bool(ok)
    return names, cat_of, n_q, n_ok


def _unit_scores(names: list[str], cat_of: np.ndarray, n_q: np.ndarray, n_ok: np.ndarray) -> dict[str, float]:
    k = len(names)
    questions = np.bincount(cat_of, weights=n_q, minlength=k)
    right = np.bincount(cat_of, weights=n_ok, minlength=k)
    complete = n_q == 2
    pairs = np.bincount(cat_of, weights=complete, minlength=k)
    both = np.bincount(cat_of, weights=complete & (n_ok == 2), minlength=k)
    with np.errstate(invalid="ignore", divide="ignore"):
        acc, acc_plus = 100.0 * right / questions, 100.0 * both / pairs
    out: dict[str, float] = {}
    for i, cat in enumerate(names):
        out[f"accuracy/{cat}"], out[f"accuracy_plus/{cat}"] = float(acc[i]), float(acc_plus[i])
        out[f"score/{cat}"] = float(acc[i] + acc_plus[i])
    for name, members in (("perception", PERCEPTION), ("cognition", COGNITION)):
        present = [i for i, cat in enumerate(names) if cat in members]
        out[f"mme_{name}"] = float(sum(acc[i] + acc_plus[i] for i in present)) if present else float("nan")
        if present and (questions[present] == 0).any():  # a bootstrap resample missed a category
            out[f"mme_{name}"] = float("nan")
    total_q, total_pairs = questions.sum(), pairs.sum()
    out["accuracy"] = 100.0 * float(right.sum() / total_q) if total_q else float("nan")
    out["accuracy_plus"] = 100.0 * float(both.sum() / total_pairs) if total_pairs else float("nan")
    return out


def mme_scores(categories: list[str], pairs: list[str], correct: list[bool]) -> dict[str, float]:
    """Per-category accuracy, accuracy+ and score (x100 each, score = acc + acc+), the perception and
    cognition sums, and overall accuracy / accuracy+ (questions and complete pairs pooled over categories)."""
    return _unit_scores(*_units(categories, pairs, correct))


@TASK_ADAPTERS.register("mme")
@dataclass
class MMEAdapter(YesNoAdapter):
    max_new_tokens: int = 16
    name: ClassVar[str] = "mme"
    metrics: ClassVar[tuple[Metric, ...]] = (ACCURACY, ACCURACY_PLUS, MME_CATEGORY_SCORE, MME_PERCEPTION,
                                             MME_COGNITION, UNPARSEABLE_RATE)
    primary_metric: ClassVar[str] = "accuracy"

    def normalise_answer(self, answer: str) -> str:
        return answer.strip().lower().rstrip(".")

    def parse(self, raw: str, sample: Sample) -> Parsed:
        return parse_yes_no(raw)

    def aggregate(self, records: list[SampleResult], seed: int) -> list[MetricValue]:
        """Bootstrap CIs resample images (question pairs), not single questions, so accuracy+ stays defined
        (the rows' n counts images); a resample that misses a category gives NaN sums, which are dropped."""
        names, cat_of, n_q, n_ok = _units([r.category or "" for r in records], [pair_key(r.sample_id) for r in records],
                                          [bool(r.score) for r in records])
        _, _, _, n_unparsed = _units([r.category or "" for r in records], [pair_key(r.sample_id) for r in records],
                                     [not r.parse_ok for r in records])

        def statistic(idx: np.ndarray) -> dict[str, float]:
            out = _unit_scores(names, cat_of[idx], n_q[idx], n_ok[idx])
            out["unparseable_rate"] = 100.0 * float(n_unparsed[idx].sum() / n_q[idx].sum())
            return out

        return bootstrap_metrics(statistic, len(cat_of), seed)
