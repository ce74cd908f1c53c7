"""Judges score open-ended answers against a reference (LLaVA-Bench rubric: a pair of 1-10 scores)."""

from vittle_bench.judges.base import JUDGES, Judge, Judgment, judge_class, load_judge

__all__ = ["JUDGES", "Judge", "Judgment", "judge_class", "load_judge"]
