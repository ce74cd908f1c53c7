"""Every metric and parser against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from vittle_bench.judges.reference_overlap import word_f1
from vittle_bench.metrics.pope import pope_metrics
from vittle_bench.metrics.stats import bootstrap_metrics
from vittle_bench.tasks.closed_form import parse_choice
from vittle_bench.tasks.open_ended import relative_score
from vittle_bench.tasks.pope import parse_pope_answer

POPE_CASES = [
    ("Yes", "yes"), ("No", "no"), ("no", "no"), ("Yes.", "yes"), ("No, there is not.", "no"),
    ("There is not a dog in the image.", "no"), ("Yes, there is a dog. No cat though.", "yes"),
    ("Not at all", "yes"),  # the official rule is case-sensitive: "Not" is not caught (documented)
    ("NO", "yes"), ("no.", "no"), ("There is a dog", "yes"), ("I do not see one", "no"),
    ("No.", "no"), ("nope", "yes"), ("yes, no doubt", "no"),  # "no" before the first period wins
]


@pytest.mark.parametrize("raw,expected", POPE_CASES)
def test_pope_parser_follows_the_official_rule(raw, expected):
    assert parse_pope_answer(raw).value == expected


@pytest.mark.parametrize("raw", ["", "   ", ".", ". No"])
def test_pope_parser_counts_empty_answers_as_unparseable(raw):
    assert parse_pope_answer(raw).ok is False and parse_pope_answer(raw).value is None


def test_pope_metrics_match_hand_computation():
    gold = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 1], dtype=bool)
    said = ["yes", "yes", "no", None, "yes", "no", "no", "no", "yes", "yes"]
    pred_yes = np.array([s == "yes" for s in said])
    pred_no = np.array([s == "no" for s in said])
    m = pope_metrics(gold, pred_yes, pred_no)
    # TP = 3 (0, 1, 9), FP = 2 (4, 8), TN = 3 (5, 6, 7), FN = 2 (2 said no, 3 unparseable)
    assert m["accuracy"] == pytest.approx(6 / 10)
    assert m["precision"] == pytest.approx(3 / 5)
    assert m["recall"] == pytest.approx(3 / 5)
    assert m["f1"] == pytest.approx(0.6)
    assert m["yes_ratio"] == pytest.approx(5 / 10)
    assert m["unparseable_rate"] == pytest.approx(1 / 10)


def test_pope_precision_is_zero_when_nothing_is_predicted_yes():
    gold = np.array([True, False])
    m = pope_metrics(gold, np.array([False, False]), np.array([True, True]))
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0 and m["accuracy"] == 0.5


CHOICES = ("red", "blue", "green", "purple")
MC_CASES = [
    ("B", "B"), ("B.", "B"), ("(C)", "C"), ("D)", "D"), ("Answer: A", "A"), ("The answer is (C).", "C"),
    ("answer is B", "B"), ("B. blue", "B"), ("(A) red", "A"), ("It is green.", "C"), ("purple", "D"),
    ("Option D", "D"), ("C: green", "C"),
]
MC_UNPARSEABLE = ["", "E", "I cannot tell.", "red or blue", "Sorry, I can't help with that.", "F.", "maybe"]


@pytest.mark.parametrize("raw,expected", MC_CASES)
def test_choice_parser_extraction_chain(raw, expected):
    parsed = parse_choice(raw, CHOICES)
    assert parsed.ok and parsed.value == expected


@pytest.mark.parametrize("raw", MC_UNPARSEABLE)
def test_choice_parser_never_guesses(raw):
    parsed = parse_choice(raw, CHOICES)
    assert not parsed.ok and parsed.value is None


def test_choice_parser_respects_the_number_of_options():
    assert parse_choice("D", ("1", "2", "3")).ok is False
    assert parse_choice("C", ("1", "2", "3")).value == "C"


def test_relative_score_and_overlap_judge():
    assert relative_score(np.array([5.0, 7.0]), np.array([10.0, 10.0])) == pytest.approx(60.0)
    assert relative_score(np.array([8.0]), np.array([4.0])) == pytest.approx(200.0)
    assert word_f1("a red circle", "a red circle") == 1.0
    # answer {a, blue, circle}, reference {a, red, circle, and, square}: 2 common; P = 2/3, R = 2/5
    assert word_f1("a blue circle", "a red circle and square") == pytest.approx(2 * (2 / 3) * (2 / 5) / (2 / 3 + 2 / 5))
    assert word_f1("", "anything") == 0.0


def test_bootstrap_interval_brackets_the_point_and_is_seeded():
    values = np.random.default_rng(0).random(200) < 0.7
    stat = lambda idx: {"accuracy": values[idx].mean()}  # noqa: E731
    (metric, value, low, high, n), = bootstrap_metrics(stat, len(values), seed=3)
    assert metric == "accuracy" and n == 200 and low < value < high
    assert 0.04 < high - low < 0.2  # about 2 x 1.96 x sqrt(0.21 / 200) = 0.127
    assert bootstrap_metrics(stat, len(values), seed=3) == bootstrap_metrics(stat, len(values), seed=3)
