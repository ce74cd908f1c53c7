"""Effective mutual information (EMI) of a cell and its drop under shift (EMID), with bootstrap CIs (PAPER.md §4).

EMI(P; model) = I(X; Ŷ_model) − I(X; Y_ref), each term a CLUB estimate (`club.py`). One estimator is fitted once
on the pooled (x, y_model) and (x, y_ref) pairs of every cell being compared (or loaded) and then only
*evaluated* per cell: a fresh fit per cell would make EMI values of two cells, and so EMID, incomparable.
EMID's data-only upper bound is in `emid_bound.py`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vittle_bench.metrics.club import ClubEstimator
from vittle_bench.metrics.club_net import ESTIMATORS, REFERENCE, ClubConfig

N_BOOT = 1000
CONFIDENCE = 0.95


def resolve_estimator(spec: str | Path) -> ClubEstimator | ClubConfig:
    """A run's `--emi-estimator`: a recipe name (`club-reference`, `club-standardised`: fit that CLUB on the run's
    pairs) or a file (evaluate with that estimator: one saved by a run, or a checkpoint in the EMI repository's
    layout). A file that is not an estimator is a ConfigError."""
    return ESTIMATORS[str(spec)] if str(spec) in ESTIMATORS else ClubEstimator.load(spec)


def fit_pooled(cells: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], config: ClubConfig = REFERENCE,
               meta: dict[str, Any] | None = None, groups: Sequence[Sequence[Any]] | None = None) -> ClubEstimator:
    """One estimator for all cells compared: fitted on every cell's (x, y_model) and (x, y_ref) pairs pooled.

    `groups[i]` labels cell i's rows (e.g. sample ids) for an early-stopping split; by default a row's two
    pairs (model answer, reference) share a group.
    """
    x = np.concatenate([c[0] for c in cells] * 2)
    y = np.concatenate([c[1] for c in cells] + [c[2] for c in cells])
    if groups is None:
        groups = [[f"{i}:{j}" for j in range(len(c[0]))] for i, c in enumerate(cells)]
    labels = [str(g) for cell in groups for g in cell] * 2
    return ClubEstimator.fit(x, y, config, meta, labels)


def _weight_chunks(n: int, n_boot: int, seed: int, chunk: int = 100) -> Iterator[np.ndarray]:
    """Row weights of seeded percentile-bootstrap draws (multinomial counts / n), in chunks to bound memory."""
    rng = np.random.default_rng(seed)
    for start in range(0, n_boot, chunk):
        yield rng.multinomial(n, np.full(n, 1.0 / n), size=min(chunk, n_boot - start)) / n


def _interval(draws: np.ndarray, confidence: float) -> tuple[float, float]:
    alpha = (1 - confidence) / 2
    return float(np.quantile(draws, alpha)), float(np.quantile(draws, 1 - alpha))


@dataclass(frozen=True)
class Estimate:
    """A point estimate over n rows with its bootstrap percentile interval."""

    value: float
    ci_low: float
    ci_high: float
    n: int


def emi_estimate(estimator: ClubEstimator, x: np.ndarray, y_model: np.ndarray, y_ref: np.ndarray, *, seed: int = 0,
                 n_boot: int = N_BOOT, confidence: float = CONFIDENCE) -> dict[str, Estimate]:
    """EMI, I(X;Ŷ) and I(X;Y_ref) of one cell; CIs resample the cell's rows (paired) with the estimator fixed."""
    model, ref = estimator.terms(x, y_model), estimator.terms(x, y_ref)
    n = model.n
    point = np.full((1, n), 1.0 / n)
    draws: dict[str, list[np.ndarray]] = {"emi": [], "mi_model": [], "mi_ref": []}
    for w in _weight_chunks(n, n_boot, seed):
        m, r = model.value(w), ref.value(w)
        draws["emi"].append(m - r)
        draws["mi_model"].append(m)
        draws["mi_ref"].append(r)
    m0, r0 = float(model.value(point)[0]), float(ref.value(point)[0])
    values = {"emi": m0 - r0, "mi_model": m0, "mi_ref": r0}
    return {k: Estimate(values[k], *_interval(np.concatenate(draws[k]), confidence), n) for k in values}


def emid_estimate(estimator: ClubEstimator, p: tuple[np.ndarray, np.ndarray, np.ndarray],
                  q: tuple[np.ndarray, np.ndarray, np.ndarray], *, paired: bool, seed: int = 0,
                  n_boot: int = N_BOOT, confidence: float = CONFIDENCE) -> Estimate:
    """EMID = EMI(P) − EMI(Q), each cell given as (x, y_model, y_ref).

    `paired=True` when row i of P and of Q are the same item (a clean sample and its shifted version): one draw
    resamples both, which removes the between-item variance from the CI. Otherwise the cells are resampled
    independently.
    """
    pm, pr = estimator.terms(p[0], p[1]), estimator.terms(p[0], p[2])
    qm, qr = estimator.terms(q[0], q[1]), estimator.terms(q[0], q[2])
    if paired and pm.n != qm.n:
        raise ValueError(f"paired EMID needs aligned cells, got {pm.n} and {qm.n} rows")
    draws = []
    chunks = ((w, w) for w in _weight_chunks(pm.n, n_boot, seed)) if paired else \
        zip(_weight_chunks(pm.n, n_boot, seed), _weight_chunks(qm.n, n_boot, seed + 1))
    for wp, wq in chunks:
        draws.append(pm.value(wp) - pr.value(wp) - qm.value(wq) + qr.value(wq))
    value = (pm.value(np.full((1, pm.n), 1 / pm.n)) - pr.value(np.full((1, pm.n), 1 / pm.n))
             - qm.value(np.full((1, qm.n), 1 / qm.n)) + qr.value(np.full((1, qm.n), 1 / qm.n)))[0]
    return Estimate(float(value), *_interval(np.concatenate(draws), confidence), min(pm.n, qm.n))
