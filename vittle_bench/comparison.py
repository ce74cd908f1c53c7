"""Paired comparison of two models' runs: is model B better than model A, cell by cell and per shift kind?

Samples are matched by (task, condition, sample_id) and a sample enters a cell only where both runs
scored it. Per cell: the difference B - A of the task's primary metric, its paired-bootstrap interval (one
draw of sample ids weights both models and every condition), and a p-value from McNemar's exact test
(binary scores), the Wilcoxon signed-rank test (judge scores) or the paired bootstrap (F1, precision, ...).
Per shift kind (and over all shifts): the difference of the condition averages, with the same paired
bootstrap for its interval and p-value (a kind with a single condition repeats that cell's row).
`vittle-bench compare` prints these rows; the web report shows them beside the samples behind them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from vittle_bench.adapters.base import declared_metric
from vittle_bench.errors import ConfigError
from vittle_bench.leaderboard import choose_metric, column_order_key
from vittle_bench.metrics import stats
from vittle_bench.metrics.base import PERCENT, WILCOXON, Metric
from vittle_bench.metrics.grid import SampleGrid
from vittle_bench.metrics.stats import cell_seed

COLUMNS = ["task", "metric", "unit", "model_a", "model_b", "scope", "condition", "shift_kind", "severity", "n", "a",
           "b", "diff", "ci_low", "ci_high", "p_value", "test"]


def _pick_model(results: pd.DataFrame, task: str, wanted: str | None, which: str) -> str:
    models = sorted(set(results.loc[results["task"] == task, "model"]))
    if wanted is not None:
        if wanted not in models:
            raise ConfigError(f"run {which} has no model {wanted!r} on {task} (it has {', '.join(models)})")
        return wanted
    if len(models) > 1:
        raise ConfigError(f"run {which} holds several models on {task} ({', '.join(models)}): "
                          f"choose one with --model-{which.lower()}")
    return models[0]


class _Side(NamedTuple):
    """One run of the comparison: its results.csv rows, its samples.jsonl records and the model asked for."""

    which: str  # "A" or "B"
    results: pd.DataFrame
    samples: pd.DataFrame
    model: str | None


class _Bootstrap(NamedTuple):
    """The paired bootstrap's settings, the same for every row of a comparison."""

    seed: int
    n_boot: int
    confidence: float


@dataclass(frozen=True)
class _TaskPairs:
    """One task's per-sample scores of models A and B as (condition × sample) matrices, zero wherever either run
    did not score the sample, and the bootstrap draws every interval of the task shares (one draw of sample ids
    weights both models and every condition)."""

    metric: Metric
    base: dict[str, Any]  # the columns every row of the task repeats
    labels: list[str]  # the conditions both runs scored, in column order
    kind_of: dict[str, tuple[str, int]]  # condition -> (shift kind, severity)
    na: np.ndarray
    da: np.ndarray
    nb: np.ndarray
    db: np.ndarray
    paired: np.ndarray
    weights: np.ndarray
    bootstrap: _Bootstrap

    def row(self, scope: str, condition: str, kind: str, severity: object, sel: list[int], test: str | None,
            p_value: float | None) -> dict:
        """The difference B − A averaged over the conditions `sel`, in results.csv's units; `test` None takes the
        paired bootstrap's p-value."""
        boot = self.bootstrap
        d = stats.paired_bootstrap(self.na[sel], self.da[sel], self.nb[sel], self.db[sel], boot.seed, boot.n_boot,
                                   boot.confidence, self.metric.zero, weights=self.weights)
        scaled = [None if v is None else v * self.metric.scale for v in (d.a, d.b, d.diff, d.ci_low, d.ci_high)]
        return {**self.base, "scope": scope, "condition": condition, "shift_kind": kind, "severity": severity,
                "n": int(self.paired[sel].any(axis=0).sum()),
                **dict(zip(("a", "b", "diff", "ci_low", "ci_high"), scaled)),
                "p_value": d.p_value if test is None else p_value, "test": test or "paired bootstrap"}


def compare_runs(results_a: pd.DataFrame, samples_a: pd.DataFrame, results_b: pd.DataFrame,
                 samples_b: pd.DataFrame, model_a: str | None = None, model_b: str | None = None,
                 metric: str | None = None, seed: int = 0, n_boot: int = 1000,
                 confidence: float = 0.95) -> pd.DataFrame:
    """One row per matched cell (scope "cell") and per shift kind / all shifts (scope "kind"), in results.csv's
    units (rates in percent, so differences in percentage points)."""
    tasks = sorted(set(results_a["task"]) & set(results_b["task"]))
    if not tasks:
        raise ConfigError("the two runs share no task")
    side_a, side_b = _Side("A", results_a, samples_a, model_a), _Side("B", results_b, samples_b, model_b)
    bootstrap = _Bootstrap(seed, n_boot, confidence)
    rows: list[dict] = []
    for task in tasks:
        pairs = _pair_task(task, side_a, side_b, metric, bootstrap)
        if pairs is not None:
            rows += _task_rows(pairs)
    if not rows:
        raise ConfigError(f"no task has the metric {metric!r} in both runs" if metric else "no comparable cells")
    return pd.DataFrame(rows, columns=COLUMNS)


def _pair_task(task: str, a: _Side, b: _Side, metric: str | None, bootstrap: _Bootstrap) -> _TaskPairs | None:
    """Both models' scores on `task` for the metric both runs report (None when they share none)."""
    ma, mb = _pick_model(a.results, task, a.model, a.which), _pick_model(b.results, task, b.model, b.which)
    cells_a = a.results[(a.results["task"] == task) & (a.results["model"] == ma)]
    cells_b = b.results[(b.results["task"] == task) & (b.results["model"] == mb)]
    chosen = choose_metric(cells_a, metric, task)
    if chosen is None or chosen not in set(cells_b["metric"]):
        return None
    spec = declared_metric(chosen)
    if spec is None or spec.parts is None or spec.count:
        raise ConfigError(f"{chosen} is not a per-sample metric (a count, or a task's own aggregate): compare "
                          "accuracy, F1, relative scores, ...")
    recs_a = a.samples[(a.samples["task"] == task) & (a.samples["model"] == ma)]
    recs_b = b.samples[(b.samples["task"] == task) & (b.samples["model"] == mb)]
    if recs_a.empty or recs_b.empty:
        raise ConfigError(f"no samples.jsonl records for {task} in run {'A' if recs_a.empty else 'B'}: "
                          "compare needs the per-sample records a finished run writes")
    kind_of = {c: (k, int(v)) for c, k, v in zip(recs_a["condition"], recs_a["shift_kind"], recs_a["severity"])}
    labels = sorted(set(recs_b["condition"]) & set(kind_of), key=lambda c: column_order_key(c, kind_of[c][0]))
    ids = sorted(set(recs_a["sample_id"]) | set(recs_b["sample_id"]))
    grid_a = SampleGrid.build(recs_a, labels, ids, spec)
    grid_b = SampleGrid.build(recs_b, labels, ids, spec)
    paired = grid_a.counted & grid_b.counted
    base = {"task": task, "metric": chosen, "unit": "pp" if spec.unit == PERCENT else spec.unit, "model_a": ma,
            "model_b": mb}
    return _TaskPairs(spec, base, labels, kind_of, grid_a.num * paired, grid_a.den * paired, grid_b.num * paired,
                      grid_b.den * paired, paired,
                      stats.resample_weights(len(ids), cell_seed(bootstrap.seed, task), bootstrap.n_boot), bootstrap)


def _task_rows(pairs: _TaskPairs) -> list[dict]:
    """A row per condition, then one per shift kind (and over all shifts when there are several kinds)."""
    rows = []
    for i, label in enumerate(pairs.labels):
        kind, severity = pairs.kind_of[label]
        test, p_value = _cell_test(pairs, i)
        rows.append(pairs.row("cell", label, kind, severity, [i], test, p_value))
    for kind, sel in _kind_groups(pairs.labels, pairs.kind_of):
        if len(sel) == 1:  # a kind with one condition: its mean is that cell, with the cell's test
            rows.append({**rows[sel[0]], "scope": "kind", "condition": "mean over 1", "severity": ""})
        else:
            rows.append(pairs.row("kind", f"mean over {len(sel)}", kind, "", sel, None, None))
    return rows


def _cell_test(pairs: _TaskPairs, i: int) -> tuple[str | None, float | None]:
    """(test, p-value) of condition i: McNemar's exact test on binary scores, Wilcoxon's signed-rank test on
    judge scores; (None, None) otherwise, which leaves the row the paired bootstrap's p-value."""
    spec, m = pairs.metric, pairs.paired[i]
    if spec.binary:
        return spec.paired_test, stats.mcnemar_exact(pairs.na[i][m] > 0.5, pairs.nb[i][m] > 0.5).p_value
    if spec.paired_test == WILCOXON:
        ok = m & (pairs.da[i] > 0) & (pairs.db[i] > 0)
        scores_a, scores_b = pairs.na[i][ok] / pairs.da[i][ok], pairs.nb[i][ok] / pairs.db[i][ok]
        return spec.paired_test, stats.wilcoxon_test(scores_a, scores_b) if ok.any() else np.nan
    return None, None


def _kind_groups(labels: list[str], kind_of: dict[str, tuple[str, int]]) -> list[tuple[str, list[int]]]:
    """(shift kind, its conditions' indices) per kind in column order, plus "all shifts" when there are several
    kinds; the clean condition belongs to none."""
    kinds = [k for k in dict.fromkeys(kind_of[c][0] for c in labels) if k != "clean"]
    groups = [(k, [i for i, c in enumerate(labels) if kind_of[c][0] == k]) for k in kinds]
    if len(kinds) > 1:
        groups.append(("all shifts", [i for i, c in enumerate(labels) if kind_of[c][0] != "clean"]))
    return groups
