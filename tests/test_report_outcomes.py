"""The report's sample outcomes: which samples got worse or better under a shift, which one model keeps and the
other loses, and how a shifted question is marked against its clean twin."""

from __future__ import annotations

import pandas as pd

from vittle_bench.report.outcomes import cell_counts, keeps_and_loses, paired_scores, pick_examples, word_diff


def _records(rows: list[tuple[str, str, str, float | None]]) -> pd.DataFrame:
    """(model, condition, sample_id, score) on one task, one run."""
    return pd.DataFrame([{"run": 0, "model": m, "task": "t", "condition": c, "shift": c.split("@")[0],
                          "shift_kind": "clean" if c == "clean" else "image", "severity": 0 if c == "clean" else 3,
                          "sample_id": s, "score": score} for m, c, s, score in rows])


def test_worse_and_better_are_counted_against_the_clean_twin_and_unscored_samples_are_counted_apart():
    records = _records([("m", "clean", "1", 1.0), ("m", "noise@3", "1", 0.0),  # worse
                        ("m", "clean", "2", 0.0), ("m", "noise@3", "2", 1.0),  # better
                        ("m", "clean", "3", 1.0), ("m", "noise@3", "3", 1.0),  # same
                        ("m", "clean", "4", 1.0), ("m", "noise@3", "4", None),  # failed under the shift
                        ("m", "noise@3", "5", 1.0)])  # no clean twin
    counts = cell_counts(paired_scores(records))[("t", "noise@3", "m")]
    assert (counts.paired, counts.worse, counts.better, counts.unscored) == (3, 1, 1, 2)


def test_examples_are_capped_per_direction_largest_change_first_and_the_pick_is_stable():
    rows = [("m", "clean", str(i), 9.0) for i in range(10)]
    rows += [("m", "noise@3", str(i), 9.0 - i) for i in range(10)]  # sample i drops by i
    pairs = paired_scores(_records(rows))
    picked = pick_examples(pairs, cap=3)
    assert list(picked["sample_id"]) == ["9", "8", "7"]
    assert set(picked["direction"]) == {"worse"}
    assert picked.equals(pick_examples(pairs.sample(frac=1, random_state=1), cap=3))


def test_keeps_and_loses_needs_the_keeper_right_on_clean():
    records = _records([("a", "clean", "1", 1.0), ("a", "noise@3", "1", 1.0),  # a keeps
                        ("b", "clean", "1", 1.0), ("b", "noise@3", "1", 0.0),  # b loses -> loser B
                        ("a", "clean", "2", 0.0), ("a", "noise@3", "2", 0.0),  # a wrong on clean: keeps nothing
                        ("b", "clean", "2", 1.0), ("b", "noise@3", "2", 0.0),
                        ("a", "clean", "3", 1.0), ("a", "noise@3", "3", 0.0),  # a loses, b keeps -> loser A
                        ("b", "clean", "3", 1.0), ("b", "noise@3", "3", 1.0)])
    chosen = keeps_and_loses(paired_scores(records), "a", "b", cap=5)
    assert sorted(zip(chosen["sample_id"], chosen["loser"])) == [("1", "B"), ("3", "A")]


def test_word_diff_marks_changed_words_and_keeps_the_text():
    runs = word_diff("What colour is the ring?", "What colpur is  the ring?")
    assert "".join(text for text, _ in runs) == "What colpur is  the ring?"
    assert [text for text, changed in runs if changed] == ["colpur"]
    assert word_diff("Same text.", "Same text.") == [("Same text.", False)]
    assert word_diff("", "") == []
    assert word_diff("", "new words") == [("new words", True)]
    assert [t for t, changed in word_diff("A b c", "A B c") if changed] == ["B"]  # capitalisation is a change
