"""Uncertainty for every aggregate: seeded percentile bootstrap over samples.

Resampling indices (not values) lets one draw serve every metric of a cell, and lets two cells on the same
samples be resampled in pairs.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

N_BOOTSTRAP = 1000
CONFIDENCE = 0.95


def bootstrap_metrics(
    statistic: Callable[[np.ndarray], dict[str, float]],
    n: int,
    seed: int,
    n_boot: int = N_BOOTSTRAP,
    confidence: float = CONFIDENCE,
) -> list[tuple[str, float, float | None, float | None, int]]:
    """(metric, value, ci_low, ci_high, n) for each metric `statistic(indices)` returns."""
    if n == 0:
        return []
    point = statistic(np.arange(n))
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {k: [] for k in point}
    for _ in range(n_boot):
        values = statistic(rng.integers(0, n, n))
        for k in point:
            draws[k].append(values[k])
    alpha = (1 - confidence) / 2
    rows = []
    for metric, value in point.items():
        finite = np.asarray(draws[metric], dtype=float)
        finite = finite[np.isfinite(finite)]
        low, high = (float(np.quantile(finite, alpha)), float(np.quantile(finite, 1 - alpha))) if len(finite) else (None, None)
        rows.append((metric, float(value), low, high, n))
    return rows
