"""The CLUB estimate of I(X; Y) under a fitted (or loaded) q(y|x) (PAPER.md §4):
    Î(X; Y) = E_p(x,y)[log q(y|x)] − E_p(x) E_p(y')[log q(y'|x)].

Both recipes (`club_net.py`) evaluate it the same way: the negative term E_y'[(μ(x) − y')²] in closed form from
the mean and second moment of y, O(n·d) instead of the reference's n×n×d tensor (the same number, which also
makes the bootstrap cheap).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vittle_bench.metrics.club_checkpoint import ClubCheckpoint, load_checkpoint, save_checkpoint
from vittle_bench.metrics.club_net import REFERENCE, ClubConfig, ClubNet
from vittle_bench.metrics.club_training import train_club
from vittle_bench.metrics.embedding_arrays import as_2d

FINGERPRINT_CHARS = 8


@dataclass
class ClubTerms:
    """Per-row quantities of one cell under a fixed q, from which CLUB on any reweighting of rows is a few matmuls.

    With r = 1/(2σ²(x_i)), the negative term of row i is Σ_d r_id (μ_id² − 2 μ_id ȳ_d + E[y_d²]); so for row
    weights w (a bootstrap draw), CLUB(w) = Σ_i w_i (a_i − pos_i) − 2 Σ_d (wᵀP)_d ȳ_d + Σ_d (wᵀR)_d m2_d
    where ȳ = wᵀY, m2 = wᵀY².
    """

    pos: np.ndarray  # (n,) Σ_d r (μ − y)²
    a: np.ndarray  # (n,) Σ_d r μ²
    p: np.ndarray  # (n, d) r μ
    r: np.ndarray  # (n, d)
    y: np.ndarray  # (n, d) as the estimator sees it (standardised or not)
    y2: np.ndarray  # (n, d)

    @property
    def n(self) -> int:
        return len(self.pos)

    def value(self, weights: np.ndarray) -> np.ndarray:
        """CLUB for each row of `weights` (shape (B, n), rows summing to 1)."""
        ybar, m2 = weights @ self.y, weights @ self.y2
        return (weights @ (self.a - self.pos) - 2 * ((weights @ self.p) * ybar).sum(-1)
                + ((weights @ self.r) * m2).sum(-1))


@dataclass
class ClubEstimator:
    """A fitted (or loaded) q(y|x) plus the input scaling it was fitted with (identity for `club-reference`);
    `meta` records e.g. the encoder names."""

    net: ClubNet
    x_mean: np.ndarray
    x_std: np.ndarray
    y_mean: np.ndarray
    y_std: np.ndarray
    config: ClubConfig
    history: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def fit(cls, x: np.ndarray, y: np.ndarray, config: ClubConfig = REFERENCE,
            meta: dict[str, Any] | None = None, groups: Sequence[Any] | None = None) -> ClubEstimator:
        """Maximum likelihood of q(y|x): a fixed number of steps on all pairs (`config.steps`, the reference's
        schedule) or epochs early-stopped on a seeded held-out split's likelihood.

        `groups` (one label per row, e.g. the sample id) keeps all rows of a group on one side of the held-out
        split: when one input recurs (the same sample answered by several models, or its reference and its model
        answer), a row-wise split would reward memorising y(x) on the held-out side and defeat early stopping.
        """
        x, y = as_2d(x, "x"), as_2d(y, "y")
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
        if len(x) < 10:
            raise ValueError(f"CLUB needs at least 10 pairs to fit, got {len(x)}")
        trained = train_club(x, y, config, groups)
        return cls(trained.net, trained.x_mean, trained.x_std, trained.y_mean, trained.y_std, config,
                   trained.history, dict(meta or {}))

    @property
    def x_dim(self) -> int:
        return len(self.x_mean)

    @property
    def y_dim(self) -> int:
        return len(self.y_mean)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def fingerprint(self) -> str:
        """Digest of the recipe name, the weights and the input scaling: equal for the same fitted estimator
        (saved and loaded again), different for any other fit."""
        digest = hashlib.sha256(self.name.encode())
        for key, tensor in sorted(self.net.state_dict().items()):
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        for array in (self.x_mean, self.x_std, self.y_mean, self.y_std):
            digest.update(np.ascontiguousarray(array, dtype=np.float64).tobytes())
        return digest.hexdigest()[:FINGERPRINT_CHARS]

    @property
    def label(self) -> str:
        """`name@fingerprint`, as it appears in metric keys."""
        return f"{self.name}@{self.fingerprint}"

    def terms(self, x: np.ndarray, y: np.ndarray) -> ClubTerms:
        x, y = as_2d(x, "x"), as_2d(y, "y")
        if x.shape[1] != self.x_dim or y.shape[1] != self.y_dim:
            raise ValueError(f"the estimator takes x:{self.x_dim}-d, y:{self.y_dim}-d; got {x.shape[1]} and "
                             f"{y.shape[1]}")
        with torch.no_grad():
            mu, logvar = self.net(torch.from_numpy(((x - self.x_mean) / self.x_std).astype(np.float32)))
        mu, r = mu.double().numpy(), 0.5 * np.exp(-logvar.double().numpy())
        ys = (y - self.y_mean) / self.y_std
        return ClubTerms(pos=(r * (mu - ys) ** 2).sum(-1), a=(r * mu**2).sum(-1), p=r * mu, r=r, y=ys, y2=ys**2)

    def mi(self, x: np.ndarray, y: np.ndarray) -> float:
        """The CLUB estimate of I(X; Y) on these pairs (nats)."""
        terms = self.terms(x, y)
        return float(terms.value(np.full((1, terms.n), 1.0 / terms.n))[0])

    def save(self, path: Path | str) -> None:
        save_checkpoint(ClubCheckpoint(self.net, self.x_mean, self.x_std, self.y_mean, self.y_std, self.config,
                                       self.history, self.meta), path)

    @classmethod
    def load(cls, path: Path | str) -> ClubEstimator:
        """An estimator saved by `save`, or a CLUB checkpoint in the EMI repository's layout (a bare state dict of
        `p_mu.*` / `p_logvar.*`, e.g. its CLUB_global.pt), which loads as `club-reference`. Anything else is a
        ConfigError naming the file."""
        return cls(*load_checkpoint(path))
