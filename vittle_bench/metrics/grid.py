"""One model's samples.jsonl records on one task as (conditions, sample ids) matrices of a metric's per-sample
parts, ready for the paired resampling in `stats` (leaderboard intervals over several conditions, `compare`).

Conditions are keyed by their full label (the records' `condition` field), so joint conditions that differ
only in their parts' severities stay apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from vittle_bench.metrics.base import Metric
from vittle_bench.metrics.stats import flip_rate


def sample_arrays(records: pd.DataFrame, conditions: list[str], sample_ids: list[str],
                  metric: Metric) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(conditions, samples) num, den and counted matrices of one model on one task (absent: 0, 0, False)."""
    if metric.parts is None:
        raise ValueError(f"metric {metric.name!r} is not a ratio of per-sample sums")
    shape = (len(conditions), len(sample_ids))
    num, den, counted = np.zeros(shape), np.zeros(shape), np.zeros(shape, dtype=bool)
    if records.empty:
        return num, den, counted
    n_all, d_all, c_all = metric.parts(records)
    rows = pd.Index(conditions).get_indexer(records["condition"])
    cols = pd.Index(sample_ids).get_indexer(records["sample_id"].astype(str))
    keep = (rows >= 0) & (cols >= 0)
    num[rows[keep], cols[keep]], den[rows[keep], cols[keep]] = n_all[keep], d_all[keep]
    counted[rows[keep], cols[keep]] = c_all[keep]
    return num, den, counted


@dataclass(frozen=True)
class SampleGrid:
    """One model's samples on one task as (conditions, sample ids) matrices, ready for paired resampling."""

    conditions: list[str]
    sample_ids: list[str]
    num: np.ndarray
    den: np.ndarray
    counted: np.ndarray
    present: frozenset[str]  # conditions that have records at all

    @classmethod
    def build(cls, records: pd.DataFrame, conditions: list[str], sample_ids: list[str], metric: Metric) -> SampleGrid:
        num, den, counted = sample_arrays(records, conditions, sample_ids, metric)
        return cls(conditions, sample_ids, num, den, counted, frozenset(records["condition"]))

    def rows(self, labels: list[str]) -> list[int]:
        return [self.conditions.index(label) for label in labels]

    def flip_rate(self, label: str) -> float:
        """Clean -> `label` flip rate over the samples counted in both conditions (binary metrics)."""
        clean, shifted = self.rows(["clean", label])
        both = self.counted[clean] & self.counted[shifted]
        return flip_rate(self.num[clean][both] > 0.5, self.num[shifted][both] > 0.5)
