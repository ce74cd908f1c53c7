"""q(y | x) of the CLUB estimator and the two recipes that build and train it (PAPER.md §4).

q(y | x) is a Gaussian whose mean and log-variance come from two small MLPs trained by maximum likelihood.
Each recipe is recorded by name (and a fingerprint of the fitted weights) in every EMI metric key:

- `club-reference` (the default) is the estimator of the EMI repository (deeplearning-wisc/mllmshift-emi,
  main.py, classes `CLUB` and `EMI`): inputs are the L2-normalised embeddings as they are (x = mean of image
  and question embeddings), heads `p_mu` = Linear–Tanh–Linear and `p_logvar` = Linear–Tanh–Linear–Tanh with
  250 hidden units each (`mi_est_dim` 500 // 2), trained by maximum likelihood of q(y|x) on all pairs. That
  repository ships no training script; the schedule is the upstream CLUB estimation recipe it cites
  (Linear95/CLUB, mi_estimation.ipynb): Adam, learning rate 5e-3, batch 64, 4,000 steps, no held-out split.
  Its tanh caps log σ² at ±1, so the precision 1/(2σ²) is at most e/2 and CLUB at most e·Σ_d Var(y_d),
  which is ≤ e ≈ 2.7 nats on L2-normalised y (and about 1.4 on text embeddings that share a mean direction):
  EMI, EMID and the bound land on the papers' scale (EMI ~1e-3…1e-1), and a checkpoint in the repository's
  state-dict layout (e.g. its released `estimator_ckpt/CLUB_global.pt`) loads as this estimator.
- `club-standardised` differs on purpose, for estimates that can track large MI: x and y are standardised per
  dimension with the fit data's moments (CLUB is invariant to a per-dimension affine map of y, training is
  not: L2-normalised embeddings have per-dimension variances near 1/d); the log-variance is bounded at ±5
  (`5·tanh(h/5)`), since ±1 cannot express a well-predicted y (ρ = 0.9 needs log 0.19); and training
  early-stops on a held-out split's likelihood (an overfitted q inflates CLUB, 2× at n = 2,000). Its values are
  not on the papers' scale (tens of nats on 384/768-d embeddings).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass(frozen=True)
class ClubConfig:
    """How an estimator is built and trained; `name` identifies the recipe in metric keys and manifests."""

    name: str
    standardise: bool  # z-score x and y per dimension with the fit data's moments
    logvar_bound: float  # log σ² = bound · tanh(h / bound); 1 is the reference's plain tanh
    lr: float
    batch_size: int
    steps: int = 0  # > 0: this many Adam steps over all pairs (no held-out split); 0: early stopping
    max_epochs: int = 200  # early stopping: at most this many epochs,
    patience: int = 8  # stopping after this many without a better held-out likelihood,
    val_fraction: float = 0.2  # on this share of the rows (whole groups)
    hidden: int = 250  # width of each head's hidden layer (the reference: mi_est_dim 500 // 2)
    weight_decay: float = 0.0
    seed: int = 0


REFERENCE = ClubConfig("club-reference", standardise=False, logvar_bound=1.0, lr=5e-3, batch_size=64, steps=4000)
STANDARDISED = ClubConfig("club-standardised", standardise=True, logvar_bound=5.0, lr=2e-3, batch_size=128)
ESTIMATORS: Mapping[str, ClubConfig] = {c.name: c for c in (REFERENCE, STANDARDISED)}


class ClubNet(nn.Module):
    """q(y|x): the reference's two heads under the reference's module names, so state dicts share its layout."""

    def __init__(self, x_dim: int, y_dim: int, hidden: int, logvar_bound: float) -> None:
        super().__init__()
        self.p_mu = nn.Sequential(nn.Linear(x_dim, hidden), nn.Tanh(), nn.Linear(hidden, y_dim))
        self.p_logvar = nn.Sequential(nn.Linear(x_dim, hidden), nn.Tanh(), nn.Linear(hidden, y_dim))
        self.bound = logvar_bound

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.p_mu(x), self.bound * torch.tanh(self.p_logvar(x) / self.bound)


def identity_scaling(d: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) that leave d-dimensional inputs as they are: the scaling of every `club-reference` estimator."""
    return np.zeros(d), np.ones(d)
