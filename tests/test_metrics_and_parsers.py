"""Every metric and parser against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from vittle_bench.adapters.closed_form import parse_choice
from vittle_bench.adapters.open_ended import OpenEndedAdapter
from vittle_bench.adapters.pope import PopeAdapter, parse_pope_answer
from vittle_bench.judges.overlap import word_f1
from vittle_bench.metrics.stats import bootstrap_metrics
from vittle_bench.schema import Sample, SampleResult

POPE_CASES = [
    ("Yes", "yes"), ("No", "no"), ("no", "no"), ("Yes.", "yes"), ("No, there is not.", "no"),
    ("There is not a dog in the image.", "no"), ("Yes, there is a dog. No cat though.", "yes"),
    ("Not at all", "yes"),  # the official rule is case-sensitive: "Not" is not caught (documented)
    ("NO", "yes"), ("no.", "no"), ("There is a dog", "yes"), ("I do not see one", "no"),
    ("No.", "no"), ("nope", "yes"), ("yes, no doubt", "no"),  # "no" before the first period wins
    # evaluate.py splits on the space character only: a line break or tab glues words together
    ("No\nthe image has other shapes", "yes"), ("No\n", "yes"), ("not\tsure", "yes"), ("no\tidea", "yes"),
    (" No", "no"), ("No  there is none", "no"), ("No, ", "no"), ("No!", "yes"), ("no\n\nNo", "yes"),
    ("Yes\nno", "yes"), ("There is no\ncat", "yes"), ("there is not\n", "yes"), ("There is no cat\n", "no"),
]


def official_pope_prediction(text: str) -> str:
    """The POPE authors' evaluate.py, line for line (AoiDragon/POPE, evaluate.py): the oracle for our parser."""
    if text.find(".") != -1:
        text = text.split(".")[0]
    text = text.replace(",", "")
    words = text.split(" ")
    return "no" if "No" in words or "not" in words or "no" in words else "yes"


def official_pope_metrics(answers: list[str], labels: list[str]) -> dict[str, float]:
    """evaluate.py's metrics on the same outputs (pos = yes), as printed by the official script."""
    preds = [0 if official_pope_prediction(a) == "no" else 1 for a in answers]
    gold = [0 if label == "no" else 1 for label in labels]
    tp = sum(p == 1 and g == 1 for p, g in zip(preds, gold))
    fp = sum(p == 1 and g == 0 for p, g in zip(preds, gold))
    tn = sum(p == 0 and g == 0 for p, g in zip(preds, gold))
    fn = sum(p == 0 and g == 1 for p, g in zip(preds, gold))
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    return {"accuracy": (tp + tn) / len(preds), "precision": precision, "recall": recall,
            "f1": 2 * precision * recall / (precision + recall), "yes_ratio": preds.count(1) / len(preds)}


@pytest.mark.parametrize("raw,expected", POPE_CASES)
def test_pope_parser_follows_the_official_rule(raw, expected):
    assert official_pope_prediction(raw) == expected  # the table itself is the official behaviour
    assert parse_pope_answer(raw).value == expected


@pytest.mark.parametrize("raw", ["", "   ", "\n", " \t\n "])
def test_pope_parser_counts_empty_answers_as_unparseable(raw):
    """The one documented difference: evaluate.py calls an empty output "yes"; we count it as unparseable."""
    assert official_pope_prediction(raw) == "yes"
    assert parse_pope_answer(raw).ok is False and parse_pope_answer(raw).value is None


def _pope_records(answers: list[str], labels: list[str]) -> list[SampleResult]:
    adapter = PopeAdapter()
    records = []
    for i, (raw, label) in enumerate(zip(answers, labels)):
        sample = adapter.prepare(Sample("pope", str(i), "Is there a cat in the image?", answer=label))
        parsed = adapter.parse(raw, sample)
        score, _ = adapter.score(sample, parsed, raw)
        records.append(SampleResult("m", "pope", "clean", "clean", 0, str(i), "", "", sample.answer, raw, parsed.value,
                                    parsed.ok, score, condition="clean"))
    return records


def test_pope_metrics_equal_evaluate_py_on_chat_sentence_outputs():
    """Chat-style outputs (line breaks, punctuation, capitals) and gold answers written Yes/No: every metric
    equals evaluate.py's on the same raw outputs, in percent."""
    rng = np.random.default_rng(0)
    phrases = [raw for raw, _ in POPE_CASES] + ["Yes, there is a cat.", "No, there is no cat in the image.",
                                                 "There is no\ncat.", "I can see a cat.", "No.\nThe image shows a dog."]
    answers = [phrases[i] for i in rng.integers(0, len(phrases), 300)]
    labels = [("Yes" if rng.random() < 0.5 else "No") + (" " if rng.random() < 0.2 else "") for _ in answers]
    ours = {m.metric: m.value for m in PopeAdapter().aggregate(_pope_records(answers, labels), seed=0)}
    official = official_pope_metrics(answers, [label.strip().lower() for label in labels])
    for name, value in official.items():
        assert ours[name] == pytest.approx(100 * value, abs=1e-6), name
    assert ours["unparseable_rate"] == 0.0


def test_pope_metrics_match_hand_computation():
    labels = ["yes"] * 4 + ["no"] * 5 + ["yes"]
    said = ["Yes", "Yes", "No", "", "Yes", "No", "No", "No", "Yes", "Yes"]
    m = {v.metric: v.value for v in PopeAdapter().aggregate(_pope_records(said, labels), seed=0)}
    # TP = 3 (0, 1, 9), FP = 2 (4, 8), TN = 3 (5, 6, 7), FN = 2 (2 said no, 3 unparseable)
    assert m["accuracy"] == pytest.approx(60.0)
    assert m["precision"] == pytest.approx(60.0)
    assert m["recall"] == pytest.approx(60.0)
    assert m["f1"] == pytest.approx(60.0)
    assert m["yes_ratio"] == pytest.approx(50.0)
    assert m["unparseable_rate"] == pytest.approx(10.0)


def test_pope_precision_is_zero_when_nothing_is_predicted_yes():
    m = {v.metric: v.value for v in PopeAdapter().aggregate(_pope_records(["No", "No"], ["yes", "no"]), seed=0)}
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0 and m["accuracy"] == 50.0


def test_pope_gold_answers_are_normalised_at_load():
    """A dataset written `Yes`/`No ` scores like one written `yes`/`no` (precision/recall/F1 were 0)."""
    answers = ["Yes", "No", "Yes", "No"]
    upper = {v.metric: v.value for v in PopeAdapter().aggregate(_pope_records(answers, ["Yes", "No ", "No", "Yes"]), 0)}
    lower = {v.metric: v.value for v in PopeAdapter().aggregate(_pope_records(answers, ["yes", "no", "no", "yes"]), 0)}
    assert upper == lower and upper["precision"] == 50.0 and upper["f1"] == 50.0


CHOICES = ("red", "blue", "green", "purple")
MC_CASES = [
    ("B", "B"), ("B.", "B"), ("(C)", "C"), ("D)", "D"), ("Answer: A", "A"), ("The answer is (C).", "C"),
    ("answer is B", "B"), ("B. blue", "B"), ("(A) red", "A"), ("It is green.", "C"), ("purple", "D"),
    ("Option D", "D"), ("C: green", "C"), ("**B**", "B"), ("`C`", "C"), ("B\nBecause it is blue.", "B"),
    # what the model says first is its answer: a keyword later in the sentence does not override it
    ("C. Option A is incorrect", "C"), ("D) The answer is not A", "D"), ("(B) Option C is wrong", "B"),
    ("The correct choice is D", "D"), ("Blue.", "B"),
]
MC_UNPARSEABLE = ["", "E", "I cannot tell.", "red or blue", "Sorry, I can't help with that.", "F.", "maybe", "   ",
                  "a", "Answer: E"]
# Options whose text begins or ends with a non-word character: an option inside a longer one's occurrence
# counts for the longer one only; none is found inside a longer word or number.
SYMBOL_CASES = [
    (("-1", "1", "2", "3"), "The value is -1.", "A"), (("-1", "1", "2", "3"), "It equals 1.", "B"),
    (("-1", "1", "2", "3"), "x = -1", "A"), (("$5", "$50", "5", "50"), "It costs $5.", "A"),
    (("$5", "$50", "5", "50"), "It costs $50.", "B"), (("$5", "$50", "5", "50"), "About 50 of them", "D"),
    (("C++", "C", "Java", "Go"), "It is written in C++", "A"), (("10%", "1%", "100%", "0%"), "Roughly 10% of it", "A"),
    (("(a)", "(b)", "a", "b"), "I pick (b) here", "B"), (("1", "2", "3", "4"), "It is 12", None),
]


@pytest.mark.parametrize("raw,expected", MC_CASES)
def test_choice_parser_extraction_chain(raw, expected):
    parsed = parse_choice(raw, CHOICES)
    assert parsed.ok and parsed.value == expected


@pytest.mark.parametrize("raw", MC_UNPARSEABLE)
def test_choice_parser_never_guesses(raw):
    parsed = parse_choice(raw, CHOICES)
    assert not parsed.ok and parsed.value is None


@pytest.mark.parametrize("choices,raw,expected", SYMBOL_CASES)
def test_choice_parser_options_with_symbols(choices, raw, expected):
    parsed = parse_choice(raw, choices)
    assert parsed.value == expected and parsed.ok is (expected is not None)


def test_choice_parser_respects_the_number_of_options():
    assert parse_choice("D", ("1", "2", "3")).ok is False
    assert parse_choice("C", ("1", "2", "3")).value == "C"


def _judged(scores: list[tuple[float | None, float | None]], categories: list[str]) -> list[SampleResult]:
    return [SampleResult("m", "t", "clean", "clean", 0, str(i), "", "", "ref", "x", "x", True, s, category=c,
                         reference_score=r, condition="clean") for i, ((s, r), c) in enumerate(zip(scores, categories))]


def test_relative_score_and_overlap_judge():
    values = {v.metric: v.value for v in OpenEndedAdapter().aggregate(
        _judged([(5.0, 10.0), (7.0, 10.0), (8.0, 4.0), (None, None)], ["conv", "conv", "detail", "detail"]), 0)}
    assert values["relative_score_overlap"] == pytest.approx(100 * 20 / 24)
    assert values["relative_score_overlap/conv"] == pytest.approx(60.0)
    assert values["relative_score_overlap/detail"] == pytest.approx(200.0)
    assert values["judge_failed"] == 1
    assert word_f1("a red circle", "a red circle") == 1.0
    # answer {a, blue, circle}, reference {a, red, circle, and, square}: 2 common; P = 2/3, R = 2/5
    assert word_f1("a blue circle", "a red circle and square") == pytest.approx(2 * (2 / 3) * (2 / 5) / (2 / 3 + 2 / 5))
    assert word_f1("", "anything") == 0.0


def test_bootstrap_interval_brackets_the_point_and_is_seeded():
    values = np.random.default_rng(0).random(200) < 0.7
    stat = lambda idx: {"accuracy": values[idx].mean()}  # noqa: E731
    (metric, value, low, high, n, undefined), = bootstrap_metrics(stat, len(values), seed=3)
    assert metric == "accuracy" and n == 200 and low < value < high and undefined == 0
    assert 0.04 < high - low < 0.2  # about 2 x 1.96 x sqrt(0.21 / 200) = 0.127
    assert bootstrap_metrics(stat, len(values), seed=3) == bootstrap_metrics(stat, len(values), seed=3)


def test_relative_score_draws_without_reference_score_are_nan_and_counted():
    """A bootstrap resample whose reference scores are all 0 has no relative score: that draw is NaN, left out
    of the interval and counted in `ci_undefined` (it raised ZeroDivisionError before)."""
    records = _judged([(3.0, 0.0), (4.0, 0.0), (5.0, 8.0)], ["conv", "conv", "conv"])
    (relative, *_, failed) = OpenEndedAdapter().aggregate(records, seed=0)
    assert relative.value == pytest.approx(100 * 12 / 8)
    # P(a draw picks only the two zero-reference samples) = (2/3)^3 = 0.30
    assert 250 < relative.ci_undefined < 350 and relative.ci_low is not None and failed.value == 0


def test_relative_score_with_no_reference_score_at_all_is_nan_not_an_error():
    (relative, *_), = [OpenEndedAdapter().aggregate(_judged([(3.0, 0.0)], ["conv"]), seed=0)]
    assert np.isnan(relative.value) and relative.ci_low is None and relative.ci_undefined == 1000
