"""What a metric *is*, declared once: its unit, its direction and the per-sample parts it is computed from.

Every cell metric the suite reports is either a ratio of two per-sample sums, `scale * sum(num) / sum(den)`
over the samples it counts (accuracy = correct / answered, relative score = 100 x model / reference, POPE
precision = TP / predicted-yes, F1 = 2TP / (2TP + FP + FN)), or a count (failed judgments, failed samples),
or a value an adapter computes by its own rule (MME's category sums, EMI). A `Metric` with `parts` is
computed from those parts everywhere: the adapter's point estimate and bootstrap interval
(`ratio_aggregate`), the leaderboard's paired intervals over several conditions and `compare`'s paired tests.
So a number means the same thing in results.csv, on a leaderboard and in a comparison.

Names in results.csv are a declared base name, optionally qualified:
- `accuracy/<category>`: the same metric over one category's samples;
- `emi[<encoders>;<estimator>]`: the same metric under named encoders and estimator (EMI values under
  different qualifiers are different metrics and never share a column).

Task adapters declare the metrics they report (`TaskAdapter.metrics`, registered when the adapter is); a
plugin adds its own the same way, or through the entry-point group `vittle_bench.metrics`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from vittle_bench.metrics import stats
from vittle_bench.metrics.stats import MetricValue
from vittle_bench.registry import Registry

# The built-in units (a plugin may name its own). Rates are stored in percent everywhere (results.csv,
# leaderboards, plots), so a number is never rescaled on its way out; differences of percentages are
# percentage points.
PERCENT = "%"
RELATIVE_SCORE = "relative score"  # 100 x mean(model score) / mean(reference score)
POINTS = "points"  # a task's own score scale (MME's 0-200 per category)
VERDICT = "verdict"  # pairwise verdict, -2..+2
NATS = "nats"
COUNT = "count"

# Paired tests `compare` runs per cell, by what a per-sample value is.
MCNEMAR = "McNemar exact"  # 0/1 per sample
WILCOXON = "Wilcoxon signed-rank"  # a graded score per sample (judge scores)
PAIRED_BOOTSTRAP = "paired bootstrap"  # anything else that is a ratio of sums (F1, precision, ...)

Parts = Callable[[pd.DataFrame], tuple[np.ndarray, np.ndarray, np.ndarray]]
_QUALIFIED = re.compile(r"^([^\[/]+)(\[[^\]]*\])?(?:/(.+))?$")


@dataclass(frozen=True)
class Metric:
    """One metric. `parts(records)` gives per record (num, den, counted) as float, float, bool arrays, where
    `records` is a frame of samples.jsonl fields (answer, parsed, parse_ok, score, reference_score, category,
    error); `counted` is False for samples the metric leaves out (failed, unjudged), which is also what pairs
    two models: a sample enters a paired comparison only where both count it."""

    name: str
    unit: str
    higher_is_better: bool | None  # None: no better direction (e.g. POPE's yes-ratio)
    description: str
    parts: Parts | None = None  # None: computed by the adapter's own rule (no paired statistics)
    scale: float = 1.0
    zero: float = float("nan")  # the value of 0 / 0 (POPE precision and F1 are 0 when nothing is predicted yes)
    paired_test: str = PAIRED_BOOTSTRAP
    count: bool = False  # a count over records: the sum of `num`, reported without an interval

    def __post_init__(self) -> None:
        if not self.unit.strip() or "," in self.unit:
            raise ValueError(f"metric {self.name!r}: unit {self.unit!r} must be a short non-empty name")

    @property
    def binary(self) -> bool:
        """Per-sample values are 0/1 of 1: McNemar and clean->shift flip rates apply."""
        return self.paired_test == MCNEMAR

    def within(self, category: str) -> Metric:
        """The same metric over one category's samples (reported as `<name>/<category>`)."""
        if self.parts is None:
            return replace(self, name=f"{self.name}/{category}")
        parts = self.parts

        def inside(records: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            num, den, counted = parts(records)
            mask = (records["category"] == category).to_numpy()
            return num * mask, den * mask, counted & mask

        return replace(self, name=f"{self.name}/{category}", parts=inside)


METRICS: Registry[Metric] = Registry("metrics", ("vittle_bench.metrics.definitions",))


def register_metric(metric: Metric) -> Metric:
    """Declare a metric (built-ins, plugins, and every metric a task adapter lists in `metrics`) under its base
    name; categories and qualifiers are added to the name when results are reported."""
    if any(c in metric.name for c in "[]/"):
        raise ValueError(f"metric name {metric.name!r} must be a base name (no '/', '[' or ']')")
    return METRICS.register(metric.name)(metric)


def split_name(name: str) -> tuple[str, str, str]:
    """`accuracy/conv` -> ('accuracy', '', 'conv'); `emi[a+b;club@x]` -> ('emi', 'a+b;club@x', '')."""
    match = _QUALIFIED.match(name)
    if match is None:
        return name, "", ""
    return match.group(1), (match.group(2) or "[]")[1:-1], match.group(3) or ""


def lookup(name: str) -> Metric | None:
    """The declaration behind a results.csv metric name (qualified or per category), or None if undeclared."""
    base, _, category = split_name(name)
    if base not in METRICS:
        return None
    metric = METRICS.get(base)
    return metric.within(category) if category else replace(metric, name=name)


def records_frame(records: list) -> pd.DataFrame:
    """samples.jsonl fields of SampleResults, as `Metric.parts` reads them."""
    return pd.DataFrame.from_records([r.to_json() for r in records],
                                     columns=["answer", "parsed", "parse_ok", "score", "reference_score", "category",
                                              "error", "sample_id"])


def ratio_aggregate(metrics: list[Metric], records: pd.DataFrame, seed: int, n_boot: int = stats.N_BOOTSTRAP,
                    confidence: float = stats.CONFIDENCE) -> list[MetricValue]:
    """Point estimate and percentile bootstrap interval of every ratio metric (and the sum of every count
    metric) over one cell's records; one draw of sample indices serves every metric. `n` is the number of
    samples the metric counts."""
    weights = stats.resample_weights(len(records), seed, n_boot)
    rows = []
    for metric in metrics:
        if metric.parts is None:
            raise ValueError(f"metric {metric.name!r} has no per-sample parts: its adapter computes it")
        num, den, counted = metric.parts(records)
        if metric.count:
            rows.append(MetricValue(metric.name, float(num.sum()), None, None, len(records)))
            continue
        value = float(metric.scale * stats.ratio(np.array([num.sum()]), np.array([den.sum()]), metric.zero)[0])
        draws = metric.scale * stats.ratio(weights @ num, weights @ den, metric.zero)
        low, high = stats.percentile_interval(draws, confidence)
        rows.append(MetricValue(metric.name, value, low, high, int(counted.sum()), int(np.sum(~np.isfinite(draws)))))
    return rows
