"""Parsers on real-looking model outputs (tables of >= 40 per parser, refusals and unparseable ones included),
and metrics on fixed predictions against hand-computed values (POPE's official formulas, MME's score rule)."""

from __future__ import annotations

import numpy as np
import pytest

from vittle_bench.adapters.closed_form import ClosedFormAdapter, open_answer_correct, parse_choice, parse_open
from vittle_bench.adapters.mme import MMEAdapter, mme_scores, parse_yes_no
from vittle_bench.adapters.pope import PopeAdapter, parse_pope_answer
from vittle_bench.data.rows import mmmu_row, mmstar_row, scienceqa_row, split_inline_options
from vittle_bench.schema import Sample, SampleResult

CUPS = ("a cup of tea", "a cup of coffee", "a glass of water", "a bowl of soup")

# (raw model output, expected letter or None = unparseable), options = CUPS
MC_TABLE = [
    ("B", "B"), ("B.", "B"), ("(B)", "B"), ("B)", "B"), ("B:", "B"), (" C ", "C"), ("D\n", "D"),
    ("**B**", "B"), ("`A`", "A"), ("(D).", "D"),
    ("Answer: B", "B"), ("Answer: (C)", "C"), ("answer: d", None), ("The answer is B.", "B"),
    ("The answer is (A).", "A"), ("The correct answer is C.", "C"), ("I think the answer is D", "D"),
    ("The correct option is D.", "D"), ("Option A", "A"), ("option (B)", "B"), ("My choice is C.", "C"),
    ("The best choice: B", "B"), ("Answer: **C**", "C"),
    ("B. a cup of coffee", "B"), ("(A) a cup of tea", "A"), ("C: a glass of water", "C"), ("D) a bowl of soup", "D"),
    ("B\nThe drink is dark brown, so it is coffee.", "B"),
    ("It is a cup of coffee.", "B"), ("a glass of water", "C"), ("The image shows a bowl of soup.", "D"),
    ("A cup of tea.", "A"), ("There is a glass of water on the table.", "C"),
    ("", None), ("   ", None), ("E", None), ("F.", None), ("b", None), ("a", None),
    ("I'm sorry, I can't determine that from the image.", None), ("Sorry, I cannot help with that.", None),
    ("A or B", None), ("Both A and C could be correct.", None), ("a cup of tea or a cup of coffee", None),
    ("It is hard to say.", None), ("coffee", None), ("The image is too blurry to tell.", None),
    ("None of the above.", None),
]


@pytest.mark.parametrize("raw,expected", MC_TABLE)
def test_mc_parser_table(raw, expected):
    parsed = parse_choice(raw, CUPS)
    assert (parsed.value, parsed.ok) == (expected, expected is not None)


def test_mc_parser_respects_the_number_of_options():
    assert parse_choice("C", ("wood", "metal")).ok is False
    assert parse_choice("Answer: B", ("wood", "metal")).value == "B"
    assert parse_choice("There are 2 people.", ("1", "2", "3", "4")).value == "B"  # MMStar-style numeric options


# (raw, expected) for MME's rule; None = MME's "other" (unparseable, wrong)
YES_NO_TABLE = [
    ("Yes", "yes"), ("No", "no"), ("yes", "yes"), ("no", "no"), ("YES", "yes"), ("NO.", "no"), ("Yes.", "yes"),
    ("No.", "no"), ("y", "yes"), ("N", "no"), ("y.", "yes"), ("  yes  ", "yes"), ("Yes!", "yes"),
    ("Yes, there is a cat in the image.", "yes"), ("No, there is no dog.", "no"),
    ("Yes\nThe cat is on the sofa.", "yes"),
    ("No\n", "no"), ("Yes, it is.", "yes"), ("No, it is not.", "no"), ("Not sure", "no"), ("None", "no"),
    ("Nope", "no"), ("Noo", "no"), ("no doubt, yes", "no"), ("Yes and no", "yes"), ("yes.", "yes"),
    ("knot", "no"),  # the rule looks for "no" in the first four characters, nothing more
    ("", None), ("   ", None), (".", None), ("a", None), ("x", None), ("There is a cat.", None),
    ("The answer is yes.", None), ("Yeah", None), ("Absolutely yes", None), ("Definitely not", None),
    ("I don't know.", None), ("I'm sorry, I cannot answer that.", None), ("Maybe", None), ("The output is 5.", None),
    ("Correct", None),
]


@pytest.mark.parametrize("raw,expected", YES_NO_TABLE)
def test_mme_yes_no_parser_table(raw, expected):
    parsed = parse_yes_no(raw)
    assert (parsed.value, parsed.ok) == (expected, expected is not None)


# (raw, expected) for the POPE authors' rule; None = empty or whitespace only (our one documented deviation)
POPE_TABLE = [
    ("Yes", "yes"), ("No", "no"), ("yes", "yes"), ("no", "no"), ("Yes.", "yes"), ("No.", "no"), ("no.", "no"),
    ("Yes, there is a dog in the image.", "yes"), ("No, there is no dog in the image.", "no"),
    ("There is no dog in the image.", "no"), ("There is a dog in the image.", "yes"), ("There is not a dog.", "no"),
    ("I do not see a dog.", "no"), ("No dog is visible.", "no"), ("No, there isn't.", "no"),
    ("Yes, there is. No other animals.", "yes"),  # only the first sentence counts
    ("The image shows a cat, not a dog.", "no"), ("There's no surfboard here.", "no"), ("Yes there is", "yes"),
    (" yes ", "yes"), ("Yes\n", "yes"), ("yes, no doubt", "no"), ("No, no, no.", "no"),
    ("Not really.", "yes"), ("NO", "yes"), ("Nope", "yes"), ("There isn't a dog.", "yes"),  # case-sensitive words
    ("Sorry, I cannot answer.", "yes"), ("I cannot determine that.", "yes"),  # refusals read as yes (official)
    ("I'm not sure.", "no"), ("It is not possible to tell.", "no"),
    ("A dog is lying on the couch.", "yes"), ("Yes, a surfboard.", "yes"), ("No surfboard.", "no"),
    ("There are two dogs. No cats.", "yes"), ("Nothing like that.", "yes"),
    (".", "yes"), ("...", "yes"), (". No", "yes"),  # evaluate.py: no words before the first "." read as yes
    ("No\nthe image has other shapes", "yes"), ("no\nthere is none", "yes"),  # split on " " only, as evaluate.py
    ("", None), ("   ", None), ("\n", None), ("\t \n", None),
]


@pytest.mark.parametrize("raw,expected", POPE_TABLE)
def test_pope_parser_table(raw, expected):
    parsed = parse_pope_answer(raw)
    assert (parsed.value, parsed.ok) == (expected, expected is not None)


def test_tables_are_large_enough():
    assert min(len(MC_TABLE), len(YES_NO_TABLE), len(POPE_TABLE)) >= 40


def _record(task, sid, answer, parsed, ok, score, category=None):
    return SampleResult(model="m", task=task, shift="clean", shift_kind="clean", severity=0, sample_id=sid,
                        input_hash="", prompt="", answer=answer, raw_output="", parsed=parsed, parse_ok=ok,
                        score=score, category=category, condition="clean")


def test_pope_adapter_metrics_equal_the_official_formulas():
    gold = ["yes", "yes", "yes", "yes", "yes", "no", "no", "no", "no", "no", "no", "yes"]
    said = ["yes", "yes", "yes", "no", None, "yes", "no", "no", "no", "no", "yes", "yes"]
    records = [_record("pope", str(i), g, s, s is not None, float(s == g)) for i, (g, s) in enumerate(zip(gold, said))]
    got = {m: v for m, v, *_ in PopeAdapter().aggregate(records, seed=0)}
    # TP = 4 (0, 1, 2, 11), FP = 2 (5, 10), TN = 4 (6, 7, 8, 9), FN = 2 (3 said no, 4 unparseable); in percent
    tp, fp, tn, fn = 4, 2, 4, 2
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    assert got["accuracy"] == pytest.approx(100 * (tp + tn) / 12)
    assert got["precision"] == pytest.approx(100 * precision)
    assert got["recall"] == pytest.approx(100 * recall)
    assert got["f1"] == pytest.approx(100 * 2 * precision * recall / (precision + recall))
    assert got["yes_ratio"] == pytest.approx(100 * 6 / 12)  # predicted yes over all questions
    assert got["unparseable_rate"] == pytest.approx(100 * 1 / 12)


def test_mme_score_rule_by_hand():
    # existence: image a (both right), image b (one right)  -> acc 3/4 = 75, acc+ 1/2 = 50, score 125
    # color:     image c (both wrong), image d (both right) -> acc 2/4 = 50, acc+ 1/2 = 50, score 100
    # code_reasoning: image e (one right)                    -> acc 1/2 = 50, acc+ 0/1 = 0,  score 50
    cats = ["existence"] * 4 + ["color"] * 4 + ["code_reasoning"] * 2
    pairs = ["a", "a", "b", "b", "c", "c", "d", "d", "e", "e"]
    correct = [1, 1, 1, 0, 0, 0, 1, 1, 0, 1]
    s = mme_scores(cats, pairs, correct)
    assert s["score/existence"] == pytest.approx(125.0)
    assert s["score/color"] == pytest.approx(100.0)
    assert s["score/code_reasoning"] == pytest.approx(50.0)
    assert s["accuracy_plus/existence"] == pytest.approx(50.0)
    assert s["mme_perception"] == pytest.approx(225.0)
    assert s["mme_cognition"] == pytest.approx(50.0)
    assert s["accuracy"] == pytest.approx(60.0)  # 6 of 10 questions
    assert s["accuracy_plus"] == pytest.approx(40.0)  # 2 of 5 images


def test_mme_adapter_pairs_by_image_and_matches_the_rule():
    rows = [("existence/1.jpg#0", "existence", "yes", "yes"), ("existence/1.jpg#1", "existence", "no", "no"),
            ("existence/2.jpg#2", "existence", "yes", "no"), ("existence/2.jpg#3", "existence", "no", "no"),
            ("OCR/3.jpg#4", "OCR", "yes", None), ("OCR/3.jpg#5", "OCR", "no", "no"),
            ("numerical_calculation/4.png#6", "numerical_calculation", "yes", "yes"),
            ("numerical_calculation/4.png#7", "numerical_calculation", "no", "no")]
    records = [_record("mme", sid, gold, said, said is not None, float(said == gold), cat)
               for sid, cat, gold, said in rows]
    got = {v.metric: (v.value, v.n) for v in MMEAdapter().aggregate(records, seed=0)}
    # existence: acc 3/4, acc+ 1/2 -> 125; OCR: acc 1/2, acc+ 0 -> 50; numerical: 100 + 100 = 200
    assert got["mme_perception"][0] == pytest.approx(175.0)
    assert got["mme_cognition"][0] == pytest.approx(200.0)
    assert got["unparseable_rate"][0] == pytest.approx(100 / 8)  # percent, like every rate
    assert got["mme_perception"][1] == 4  # bootstrap units are images


def test_yes_no_prompts_and_scores_follow_llava():
    """POPE and MME: the question, LLaVA-1.5's short-answer line, 8 / 16 new tokens; 1 for the gold answer, 0 for
    the other one and for an unparseable answer."""
    suffix = "\nAnswer the question using a single word or phrase."
    sample = Sample(task="t", sample_id="0", question="Is there a cat in the image?", answer="yes")
    for adapter, tokens in ((PopeAdapter(), 8), (MMEAdapter(), 16)):
        request = adapter.build_request(sample)
        assert (request.prompt, request.max_new_tokens) == ("Is there a cat in the image?" + suffix, tokens)
        assert [adapter.score(sample, adapter.parse(raw, sample), raw) for raw in ("Yes.", "No", "")] == [
            (1.0, None), (0.0, None), (0.0, None)]
    assert PopeAdapter(prompt_suffix="\nYes or no?").build_request(sample).prompt.endswith("\nYes or no?")


def test_closed_form_per_category_accuracy():
    records = [_record("mc", "0", "A", "A", True, 1.0, "math"), _record("mc", "1", "B", "A", True, 0.0, "math"),
               _record("mc", "2", "C", "C", True, 1.0, "ocr"), _record("mc", "3", "D", None, False, 0.0, "ocr"),
               _record("mc", "4", "A", "A", True, 1.0, "ocr")]
    got = {m: v for m, v, *_ in ClosedFormAdapter(per_category=True).aggregate(records, seed=0)}
    assert got["accuracy"] == pytest.approx(100 * 3 / 5)
    assert got["accuracy/math"] == pytest.approx(100 / 2)
    assert got["accuracy/ocr"] == pytest.approx(100 * 2 / 3)
    assert got["unparseable_rate"] == pytest.approx(100 / 5)


@pytest.mark.parametrize("raw,gold,expected", [
    ("3.5", "3.5", True), ("x = 3.50", "3.5", True), ("The value is 3.499", "3.5", True), ("3.6", "3.5", False),
    ("1,200 dollars", "1200", True), ("Paris", "paris", True), ("It is in Paris, France.", "Paris", True),
    ("B", "b", True), ("bob", "b", False), ("24/7", "['24/7', '3.43']", True), ("about 3.43", "['24/7', '3.43']", True),
    ("no idea", "42", False),
])
def test_mmmu_open_answer_rule(raw, gold, expected):
    assert open_answer_correct(parse_open(raw).value or "", gold) is expected


def test_row_formats_by_hand():
    stem, choices, exact = split_inline_options("How many?\nOptions: A: 1, B: 2, C: 3, D: 4")
    assert (stem, choices, exact) == ("How many?", ("1", "2", "3", "4"), True)
    fields = mmstar_row({"question": "Which?\nOptions: A: a, b and c, B: d", "answer": "b ", "meta": {}}, {}, 0)
    assert fields["choices"] == ("a, b and c", "d") and fields["answer"] == "B" and fields["question"] == "Which?"
    assert scienceqa_row({"answer": 2, "choices": ("x", "y", "z")}, {}, 0)["answer"] == "C"
    with pytest.raises(ValueError):
        scienceqa_row({"answer": 3, "choices": ("x", "y", "z")}, {}, 0)
    img1, img2 = object(), object()
    fields = mmmu_row({"sample_id": "validation_Art_Theory_3", "question": "Compare <image 2> with <image 1>.",
                       "choices": "['<image 1>', 'same']", "answer": "A", "category": None, "meta": {}},
                      {"image_1": img1, "image_2": img2, "image_3": None}, 0)
    assert fields["images"] == (img1, img2) and fields["choices"] == ("<image 1>", "same")
    assert fields["category"] == "Art_Theory"


def test_closed_form_prompts_follow_lmms_eval():
    sqa = Sample(task="t", sample_id="0", question="Which is a metal?", choices=("wood", "iron"), context="Look.")
    assert ClosedFormAdapter().build_request(sqa).prompt == (
        "Context: Look.\nWhich is a metal?\nA. wood\nB. iron\nAnswer with the option's letter from the given choices "
        "directly.")
    star = Sample(task="t", sample_id="0", question="How many?", choices=("1", "2"))
    assert ClosedFormAdapter(prompt_suffix="\nX", options_format="inline").build_request(star).prompt == (
        "How many?\nOptions: A: 1, B: 2\nX")
    open_q = Sample(task="t", sample_id="0", question="<image 1> x?", answer="3")
    assert ClosedFormAdapter(open_prompt_suffix="\n\nShort.").build_request(open_q).prompt == "<image 1> x?\n\nShort."
    assert np.isfinite(ClosedFormAdapter().score(open_q, parse_open("3"), "3")[0])
