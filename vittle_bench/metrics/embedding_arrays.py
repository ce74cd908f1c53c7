"""The input check shared by the EMI estimators and the JSD bound: embeddings arrive as one finite row per sample."""

from __future__ import annotations

import numpy as np


def as_2d(a: np.ndarray, name: str) -> np.ndarray:
    """`a` as a float64 (rows, dims) array; a ValueError naming `name` for any other shape or a non-finite value,
    which would otherwise surface as a NaN estimate far from its cause."""
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-d array (rows = samples), got shape {a.shape}")
    if not np.isfinite(a).all():
        bad = int((~np.isfinite(a)).any(axis=1).sum())
        raise ValueError(f"{name} has {bad} row(s) with NaN or infinite values")
    return a
