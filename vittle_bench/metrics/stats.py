"""Uncertainty and paired comparisons for every aggregate, on numpy + scipy.stats.

Two bootstrap forms, both seeded and both percentile intervals:

- `bootstrap_metrics` (used by task adapters per cell) resamples sample *indices*, so one draw serves every
  metric of a cell.
- `resample_weights` / `ratio_bootstrap` / `paired_bootstrap` express a resample as multinomial counts per
  sample. Every metric the suite reports is a ratio of two per-sample sums (accuracy = correct / valid,
  relative score = 100 x model / reference, POPE precision = TP / predicted-yes, F1 = 2TP / (2TP + FP + FN)),
  so a whole bootstrap over many shift conditions is two matrix products. Using the *same* counts for every
  condition and for both models is what makes the resampling paired: a sample's clean and shifted versions,
  and model A's and model B's answers to it, always move together.

How each results.csv metric is written as such a ratio over samples.jsonl records is declared in
`metrics/definitions.py`; `metrics/grid.py` lays one model's records on one task out as (conditions,
sample ids) matrices for the paired resampling.

Tests: McNemar's exact test (binary scores), Wilcoxon signed-rank (judge scores), and a two-sided bootstrap
p-value. Robustness summaries: clean->shift flip rate, relative robustness, area under the severity curve.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import integrate, stats

N_BOOTSTRAP = 1000
CONFIDENCE = 0.95


def cell_seed(seed: int, *parts: str) -> int:
    """Bootstrap seed of one cell, row or comparison: fixed by the run seed and its identity (task, model, ...),
    not by processing order, so merging more runs never changes another row's interval."""
    return int.from_bytes(hashlib.sha256("\x1f".join([str(seed), *parts]).encode()).digest()[:4], "little")


def percentile_interval(draws: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float | None, float | None]:
    """Percentile interval of the finite bootstrap draws (None, None when there are none)."""
    finite = np.asarray(draws, dtype=float)
    finite = finite[np.isfinite(finite)]
    if not len(finite):
        return None, None
    alpha = (1 - confidence) / 2
    return float(np.quantile(finite, alpha)), float(np.quantile(finite, 1 - alpha))


class MetricValue(NamedTuple):
    """One metric of one cell: value with its bootstrap interval. `ci_undefined` counts bootstrap draws in
    which the metric was undefined (e.g. a resample whose reference scores are all 0): they are left out of
    the interval and reported, never silently."""

    metric: str
    value: float
    ci_low: float | None
    ci_high: float | None
    n: int
    ci_undefined: int = 0


def bootstrap_metrics(
    statistic: Callable[[np.ndarray], dict[str, float]],
    n: int,
    seed: int,
    n_boot: int = N_BOOTSTRAP,
    confidence: float = CONFIDENCE,
) -> list[MetricValue]:
    """Each metric `statistic(indices)` returns, with the percentile interval of `n_boot` resamples of the
    indices (for metrics that are not a ratio of per-sample sums, e.g. MME's per-image scores)."""
    if n == 0:
        return []
    point = statistic(np.arange(n))
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {k: [] for k in point}
    for _ in range(n_boot):
        values = statistic(rng.integers(0, n, n))
        for k in point:
            draws[k].append(values[k])
    rows = []
    for metric, value in point.items():
        metric_draws = np.asarray(draws[metric], dtype=float)
        low, high = percentile_interval(metric_draws, confidence)
        rows.append(MetricValue(metric, float(value), low, high, n, int(np.sum(~np.isfinite(metric_draws)))))
    return rows


def resample_weights(n: int, seed: int, n_boot: int = N_BOOTSTRAP) -> np.ndarray:
    """(n_boot, n) counts: row b says how often each sample appears in bootstrap draw b.

    Row b counts the n indices drawn with replacement for resample b (a Multinomial(n, 1/n) vector), so one
    matrix serves every condition and both models of a paired comparison.
    """
    if n == 0:
        return np.zeros((n_boot, 0))
    indices = np.random.default_rng(seed).integers(0, n, (n_boot, n))
    flat = (np.arange(n_boot)[:, None] * n + indices).ravel()
    return np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n).astype(float)


def ratio(num: np.ndarray, den: np.ndarray, zero: float) -> np.ndarray:
    """num / den elementwise, `zero` where den is 0 (NaN: undefined)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), zero)


def condition_mean_ratio(num: np.ndarray, den: np.ndarray, weights: np.ndarray | None = None,
                         zero: float = np.nan) -> np.ndarray:
    """Mean over conditions (rows) of sum(w * num) / sum(w * den); one value per weight row (or a scalar).

    `num` and `den` are (conditions, samples); a sample missing from a condition has num = den = 0 there.
    `zero` is the value of a 0/0 ratio (POPE precision and F1 are 0 when nothing is predicted yes).
    """
    num, den = np.atleast_2d(num), np.atleast_2d(den)
    if weights is None:
        per_condition = ratio(num.sum(1), den.sum(1), zero)  # (conditions,)
    else:  # (conditions, n_boot); a contiguous copy is several times faster than BLAS on the transposed view
        columns = np.ascontiguousarray(weights.T)
        per_condition = ratio(num @ columns, den @ columns, zero)
    with warnings.catch_warnings():  # an all-NaN draw (no valid sample drawn) just drops out of the interval
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(per_condition, axis=0)


def ratio_bootstrap(num: np.ndarray, den: np.ndarray, seed: int, n_boot: int = N_BOOTSTRAP,
                    confidence: float = CONFIDENCE, zero: float = np.nan,
                    weights: np.ndarray | None = None) -> tuple[float, float | None, float | None]:
    """(value, ci_low, ci_high) of the condition-averaged ratio, resampling samples jointly across conditions."""
    num, den = np.atleast_2d(num), np.atleast_2d(den)
    w = resample_weights(num.shape[1], seed, n_boot) if weights is None else weights
    value = float(condition_mean_ratio(num, den, zero=zero))
    return (value, *percentile_interval(condition_mean_ratio(num, den, w, zero), confidence))


@dataclass(frozen=True)
class PairedDifference:
    """B - A with its paired-bootstrap percentile interval and two-sided bootstrap p-value."""

    a: float
    b: float
    diff: float
    ci_low: float | None
    ci_high: float | None
    p_value: float


def bootstrap_pvalue(draws: np.ndarray) -> float:
    """Two-sided p-value of 'difference = 0' from bootstrap draws of the difference.

    Twice the smaller share of draws on either side of zero, with the +1 correction so a finite number of
    draws never claims p = 0 (the smallest reportable p is 2 / (n_boot + 1)).
    """
    d = np.asarray(draws, dtype=float)
    d = d[np.isfinite(d)]
    if not len(d):
        return float("nan")
    tail = min(np.sum(d <= 0), np.sum(d >= 0))
    return float(min(1.0, 2 * (tail + 1) / (len(d) + 1)))


def paired_bootstrap(num_a: np.ndarray, den_a: np.ndarray, num_b: np.ndarray, den_b: np.ndarray, seed: int,
                     n_boot: int = N_BOOTSTRAP, confidence: float = CONFIDENCE, zero: float = np.nan,
                     weights: np.ndarray | None = None) -> PairedDifference:
    """Difference of two models' condition-averaged ratios on the same samples, resampled in pairs.

    All four arrays are (conditions, samples) with the same sample order; the same multinomial counts weight
    A and B, so the interval reflects only the disagreement between the models, not sample difficulty.
    """
    arrays = [np.atleast_2d(x) for x in (num_a, den_a, num_b, den_b)]
    w = resample_weights(arrays[0].shape[1], seed, n_boot) if weights is None else weights
    a = float(condition_mean_ratio(arrays[0], arrays[1], zero=zero))
    b = float(condition_mean_ratio(arrays[2], arrays[3], zero=zero))
    draws = condition_mean_ratio(arrays[2], arrays[3], w, zero) - condition_mean_ratio(arrays[0], arrays[1], w, zero)
    low, high = percentile_interval(draws, confidence)
    return PairedDifference(a, b, b - a, low, high, bootstrap_pvalue(draws))


@dataclass(frozen=True)
class McNemarResult:
    only_a: int  # A right, B wrong
    only_b: int  # A wrong, B right
    p_value: float


def mcnemar_exact(correct_a: np.ndarray, correct_b: np.ndarray) -> McNemarResult:
    """McNemar's exact test: under H0 a discordant pair is equally likely to favour either model, so the
    count favouring B is Binomial(discordant, 1/2); two-sided binomial test (p = 1 without discordant pairs)."""
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    if only_a + only_b == 0:
        return McNemarResult(only_a, only_b, 1.0)
    return McNemarResult(only_a, only_b, float(stats.binomtest(only_b, only_a + only_b, 0.5).pvalue))


def wilcoxon_test(scores_a: np.ndarray, scores_b: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of the per-sample differences B - A (zero differences dropped;
    scipy picks the exact null distribution for small samples without ties). p = 1 when all pairs tie."""
    d = np.asarray(scores_b, dtype=float) - np.asarray(scores_a, dtype=float)
    d = d[np.isfinite(d)]
    if not np.any(d != 0):
        return 1.0
    return float(stats.wilcoxon(d, zero_method="wilcox").pvalue)


def flip_rate(clean_correct: np.ndarray, shifted_correct: np.ndarray) -> float:
    """Share of samples answered correctly when clean and wrongly under the shift (over all paired samples:
    accuracy lost to flips, before the opposite flips are netted out)."""
    c, s = np.asarray(clean_correct, dtype=bool), np.asarray(shifted_correct, dtype=bool)
    return float(np.mean(c & ~s)) if len(c) else float("nan")


def relative_robustness(shifted: float, clean: float) -> float:
    """shifted / clean: 1 means the shift costs nothing (NaN when the clean value is 0)."""
    return float(shifted) / float(clean) if clean else float("nan")


def severity_auc(severities: np.ndarray, values: np.ndarray) -> float:
    """Trapezoidal area under metric-vs-severity from severity 0 (clean) to the largest severity, divided by
    that range: a severity-averaged metric in the metric's own units, comparable across shift families."""
    s, v = np.asarray(severities, dtype=float), np.asarray(values, dtype=float)
    order = np.argsort(s)
    s, v = s[order], v[order]
    if len(s) < 2 or s[-1] == s[0]:
        return float("nan")
    return float(integrate.trapezoid(v, s) / (s[-1] - s[0]))
