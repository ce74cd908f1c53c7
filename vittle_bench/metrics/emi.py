"""Effective mutual information (EMI), its drop under shift (EMID) and EMID's data-only upper bound (docs/emi.md).

EMI(P; model) = I(X; Ŷ_model) − I(X; Y_ref), each term a CLUB estimate: q(y | x) is a Gaussian whose mean and
log-variance come from two small MLPs trained by maximum likelihood, and
    Î(X; Y) = E_p(x,y)[log q(y|x)] − E_p(x) E_p(y')[log q(y'|x)].
One estimator is fitted once on the pooled (x, y_model) and (x, y_ref) pairs of every cell being compared (or
loaded) and then only *evaluated* per cell: a fresh fit per cell would make EMI values of two cells, and so
EMID, incomparable.

Two estimators, each recorded by name (and a fingerprint of its weights) in every EMI metric key:

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

Both evaluate CLUB the same way: the negative term E_y'[(μ(x) − y')²] in closed form from the mean and second
moment of y, O(n·d) instead of the reference's n×n×d tensor (the same number, which also makes the bootstrap
cheap).
"""

from __future__ import annotations

import copy
import hashlib
import math
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from vittle_bench.errors import ConfigError

N_BOOT = 1000
CONFIDENCE = 0.95
FORMAT_VERSION = 2  # format 1 (before the estimator had a name) is refused with a message to re-fit
FINGERPRINT_CHARS = 8


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


class _ClubNet(nn.Module):
    """q(y|x): the reference's two heads under the reference's module names, so state dicts share its layout."""

    def __init__(self, x_dim: int, y_dim: int, hidden: int, logvar_bound: float) -> None:
        super().__init__()
        self.p_mu = nn.Sequential(nn.Linear(x_dim, hidden), nn.Tanh(), nn.Linear(hidden, y_dim))
        self.p_logvar = nn.Sequential(nn.Linear(x_dim, hidden), nn.Tanh(), nn.Linear(hidden, y_dim))
        self.bound = logvar_bound

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.p_mu(x), self.bound * torch.tanh(self.p_logvar(x) / self.bound)


def _nll(net: _ClubNet, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean negative log-likelihood of y under q(y|x), up to the constant (d/2)·log 2π. The reference minimises
    twice this (its `learning_loss`); Adam's steps do not depend on a constant factor of the loss."""
    mu, logvar = net(x)
    return (0.5 * ((mu - y) ** 2 * torch.exp(-logvar) + logvar)).sum(-1).mean()


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

    net: _ClubNet
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
        x, y = _as_2d(x, "x"), _as_2d(y, "y")
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} rows but y has {len(y)}")
        if len(x) < 10:
            raise ValueError(f"CLUB needs at least 10 pairs to fit, got {len(x)}")
        x_mean, x_std = _moments(x) if config.standardise else _identity(x.shape[1])
        y_mean, y_std = _moments(y) if config.standardise else _identity(y.shape[1])
        xs = torch.from_numpy(((x - x_mean) / x_std).astype(np.float32))
        ys = torch.from_numpy(((y - y_mean) / y_std).astype(np.float32))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            net = _ClubNet(x.shape[1], y.shape[1], config.hidden, config.logvar_bound)
        # The fused kernel: the same Adam update in fewer passes over the weights (1.5-2x faster steps on CPU).
        optimiser = torch.optim.Adam(net.parameters(), lr=config.lr, weight_decay=config.weight_decay, fused=True)
        shuffle = torch.Generator().manual_seed(config.seed)
        if config.steps > 0:
            history = _train_steps(net, optimiser, xs, ys, config, shuffle)
        else:
            history = _train_early_stopped(net, optimiser, xs, ys, config, shuffle, _split(len(x), config, groups))
        net.eval()
        return cls(net, x_mean, x_std, y_mean, y_std, config, history, dict(meta or {}))

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
        x, y = _as_2d(x, "x"), _as_2d(y, "y")
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
        torch.save({"format": FORMAT_VERSION, "x_dim": self.x_dim, "y_dim": self.y_dim, "config": asdict(self.config),
                    "state": self.net.state_dict(), "x_mean": self.x_mean.tolist(), "x_std": self.x_std.tolist(),
                    "y_mean": self.y_mean.tolist(), "y_std": self.y_std.tolist(),
                    "history": {k: v for k, v in self.history.items() if k != "val_nll"}, "meta": self.meta}, path)

    @classmethod
    def load(cls, path: Path | str) -> ClubEstimator:
        """An estimator saved by `save`, or a CLUB checkpoint in the EMI repository's layout (a bare state dict of
        `p_mu.*` / `p_logvar.*`, e.g. its CLUB_global.pt), which loads as `club-reference`. Anything else is a
        ConfigError naming the file."""
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise ConfigError(f"estimator {path}: no such file") from None
        except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a file that is not a checkpoint
            raise ConfigError(f"estimator {path}: not a readable torch checkpoint ({type(exc).__name__})") from None
        if isinstance(blob, Mapping) and blob.get("format") == FORMAT_VERSION:
            try:
                return cls._from_saved(blob, path)
            except (KeyError, TypeError) as exc:  # a missing or unknown field
                raise ConfigError(f"estimator {path}: malformed ({type(exc).__name__}: {exc})") from None
        if isinstance(blob, Mapping) and blob.get("format") is not None:
            raise ConfigError(f"estimator {path}: saved in format {blob.get('format')!r} by another version; "
                              f"fit it again (this version reads format {FORMAT_VERSION})")
        if isinstance(blob, Mapping) and any(str(k).startswith(("p_mu.", "p_logvar.")) for k in blob):
            return cls._from_reference_state(blob, path)
        raise ConfigError(f"estimator {path}: not a CLUB estimator (neither saved by vittle-bench nor a state dict "
                          "of p_mu.* / p_logvar.* weights)")

    @classmethod
    def _from_saved(cls, blob: Mapping[str, Any], path: Path | str) -> ClubEstimator:
        config = ClubConfig(**blob["config"])
        net = _ClubNet(blob["x_dim"], blob["y_dim"], config.hidden, config.logvar_bound)
        _load_state(net, blob["state"], path)
        x_mean, x_std, y_mean, y_std = (np.asarray(blob[k], dtype=np.float64) for k in ("x_mean", "x_std", "y_mean",
                                                                                         "y_std"))
        return cls(net, x_mean, x_std, y_mean, y_std, config, dict(blob["history"]), dict(blob["meta"]))

    @classmethod
    def _from_reference_state(cls, state: Mapping[str, Any], path: Path | str) -> ClubEstimator:
        expected = {f"{head}.{layer}.{p}" for head in ("p_mu", "p_logvar") for layer in (0, 2)
                    for p in ("weight", "bias")}
        if set(state) != expected:
            raise ConfigError(f"estimator {path}: not the EMI repository's CLUB layout (missing "
                              f"{sorted(expected - set(state))}, unexpected {sorted(set(state) - expected)})")
        hidden, x_dim = state["p_mu.0.weight"].shape
        y_dim = state["p_mu.2.weight"].shape[0]
        net = _ClubNet(x_dim, y_dim, hidden, REFERENCE.logvar_bound)
        _load_state(net, state, path)
        (x_mean, x_std), (y_mean, y_std) = _identity(x_dim), _identity(y_dim)
        return cls(net, x_mean, x_std, y_mean, y_std, replace(REFERENCE, hidden=hidden), {"loaded": str(path)}, {})


def resolve_estimator(spec: str | Path) -> ClubEstimator | ClubConfig:
    """A run's `--emi-estimator`: a recipe name (`club-reference`, `club-standardised`: fit that CLUB on the run's
    pairs) or a file (evaluate with that estimator: one saved by a run, or a checkpoint in the EMI repository's
    layout). A file that is not an estimator is a ConfigError."""
    return ESTIMATORS[str(spec)] if str(spec) in ESTIMATORS else ClubEstimator.load(spec)


def _load_state(net: _ClubNet, state: Mapping[str, Any], path: Path | str) -> None:
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:  # shapes that do not fit one another
        raise ConfigError(f"estimator {path}: inconsistent weights ({str(exc).splitlines()[-1].strip()})") from None
    net.eval()


def _train_steps(net: _ClubNet, optimiser: torch.optim.Optimizer, xs: torch.Tensor, ys: torch.Tensor,
                 config: ClubConfig, shuffle: torch.Generator) -> dict[str, Any]:
    """`config.steps` Adam steps on minibatches of shuffled passes over all pairs (a progress bar on stderr:
    the reference recipe's 4,000 steps take tens of seconds on a CPU)."""
    net.train()
    step = 0
    with tqdm(total=config.steps, desc=f"fitting {config.name}", unit="step", file=sys.stderr, leave=False) as bar:
        while step < config.steps:
            for batch in torch.randperm(len(xs), generator=shuffle).split(config.batch_size):
                optimiser.zero_grad()
                _nll(net, xs[batch], ys[batch]).backward()
                optimiser.step()
                step += 1
                bar.update()
                if step == config.steps:
                    break
    net.eval()
    with torch.no_grad():
        final = float(_nll(net, xs, ys))
    return {"n_train": len(xs), "n_val": 0, "steps": step, "epochs": round(step * config.batch_size / len(xs), 2),
            "train_nll": final}


def _train_early_stopped(net: _ClubNet, optimiser: torch.optim.Optimizer, xs: torch.Tensor, ys: torch.Tensor,
                         config: ClubConfig, shuffle: torch.Generator,
                         split: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    """Epochs over the training rows until the held-out likelihood stops improving; the best epoch's weights."""
    val, train = split
    train_t = torch.from_numpy(train)
    best, best_state, best_epoch, curve = math.inf, copy.deepcopy(net.state_dict()), 0, []
    for epoch in range(1, config.max_epochs + 1):
        net.train()
        for batch in train_t[torch.randperm(len(train_t), generator=shuffle)].split(config.batch_size):
            optimiser.zero_grad()
            _nll(net, xs[batch], ys[batch]).backward()
            optimiser.step()
        net.eval()
        with torch.no_grad():
            val_nll = float(_nll(net, xs[val], ys[val]))
        curve.append(round(val_nll, 5))
        if val_nll < best - 1e-4 * max(1.0, abs(best) if math.isfinite(best) else 1.0):
            best, best_state, best_epoch = val_nll, copy.deepcopy(net.state_dict()), epoch
        elif epoch - best_epoch >= config.patience:
            break
    net.load_state_dict(best_state)
    return {"n_train": len(train), "n_val": len(val), "epochs": len(curve), "best_epoch": best_epoch,
            "best_val_nll": best, "val_nll": curve}


def _as_2d(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-d array (rows = samples), got shape {a.shape}")
    if not np.isfinite(a).all():
        bad = int((~np.isfinite(a)).any(axis=1).sum())
        raise ValueError(f"{name} has {bad} row(s) with NaN or infinite values")
    return a


def _split(n: int, config: ClubConfig, groups: Sequence[Any] | None) -> tuple[np.ndarray, np.ndarray]:
    """(held-out rows, training rows), seeded; whole groups go to one side."""
    rng = np.random.default_rng(config.seed)
    if groups is None:
        order = rng.permutation(n)
        n_val = max(1, round(config.val_fraction * n))
        return np.sort(order[:n_val]), np.sort(order[n_val:])
    labels = np.unique(np.asarray(groups, dtype=str), return_inverse=True)[1]
    if len(labels) != n:
        raise ValueError(f"groups has {len(labels)} labels for {n} rows")
    n_groups = labels.max() + 1
    if n_groups < 2:
        raise ValueError("a grouped split needs at least 2 groups")
    held = rng.permutation(n_groups)[:max(1, round(config.val_fraction * n_groups))]
    is_val = np.isin(labels, held)
    return np.flatnonzero(is_val), np.flatnonzero(~is_val)


def _moments(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    std = a.std(0)
    # A constant dimension carries no information; a floor keeps it finite (it standardises to 0).
    return a.mean(0), np.where(std > 1e-12, std, 1.0)


def _identity(d: int) -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(d), np.ones(d)


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


# --- bootstrap -----------------------------------------------------------------------------------------------

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


# --- the JSD-based upper bound -------------------------------------------------------------------------------

def von_neumann_entropy(c: np.ndarray) -> float:
    """Entropy of the eigenvalues of a PSD matrix normalised to sum 1 (zero and rounding-negative ones dropped)."""
    return _spectrum_entropy(np.linalg.eigvalsh(np.asarray(c, dtype=np.float64)))


def _spectrum_entropy(eig: np.ndarray) -> float:
    eig = eig[eig > eig.max() * 1e-12]
    eig = eig / eig.sum()
    return float(-(eig * np.log(eig)).sum())


def _gram_entropy(rows: np.ndarray) -> float:
    """von Neumann entropy of rowsᵀ·rows from whichever of rowsᵀ·rows (d×d) and rows·rowsᵀ (n×n) is smaller:
    both have the same non-zero eigenvalues, and embedding sets often have fewer rows than dimensions."""
    small = rows @ rows.T if rows.shape[0] < rows.shape[1] else rows.T @ rows
    return _spectrum_entropy(np.linalg.eigvalsh(small))


def representation_jsd(a: np.ndarray, b: np.ndarray) -> float:
    """Representation JSD of two embedding sets (rows), as the reference's `JSD_cov` (main.py of the EMI
    repository): with uncentered covariances C_A = AᵀA, C_B = BᵀB, H((C_A + C_B)/2) − (H(C_A) + H(C_B))/2.

    H normalises eigenvalues to sum 1, so each entropy ignores scale, but the mixture does not: the sets weigh
    by their traces (their sizes, for L2-normalised rows), e.g. 3:1 for 90 clean rows against 30 long-tail rows.
    In [0, log 2]; log 2 for equal traces on orthogonal supports.
    """
    a, b = _as_2d(a, "a"), _as_2d(b, "b")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"embedding sets of different dimension: {a.shape[1]} and {b.shape[1]}")
    if np.array_equal(a, b):
        return 0.0
    mixed = np.concatenate([a, b])  # mixedᵀ·mixed = C_A + C_B, whose normalised spectrum is that of (C_A + C_B)/2
    return max(0.0, _gram_entropy(mixed) - (_gram_entropy(a) + _gram_entropy(b)) / 2)


@dataclass(frozen=True)
class BoundTerms:
    """JSD terms of the scale-adjusted EMID bound: √JSD_image + √JSD_text + JSD_out(P)^¼ + JSD_out(Q)^¼.

    jsd_image / jsd_text compare the inputs of P and Q; jsd_output_p / jsd_output_q compare model answers with
    reference answers within P and within Q (None when no model has answered: the input terms alone).
    """

    jsd_image: float
    jsd_text: float
    jsd_output_p: float | None = None
    jsd_output_q: float | None = None

    @property
    def input_terms(self) -> float:
        return math.sqrt(self.jsd_image) + math.sqrt(self.jsd_text)

    @property
    def complete(self) -> bool:
        return self.jsd_output_p is not None and self.jsd_output_q is not None

    @property
    def value(self) -> float:
        """The bound; with only the input terms it is their sum (a lower value than the full bound)."""
        p, q = self.jsd_output_p, self.jsd_output_q
        if p is None or q is None:
            return self.input_terms
        return self.input_terms + p ** 0.25 + q ** 0.25


def emid_bound(p_image: np.ndarray, p_text: np.ndarray, q_image: np.ndarray, q_text: np.ndarray,
               p_output: tuple[np.ndarray, np.ndarray] | None = None,
               q_output: tuple[np.ndarray, np.ndarray] | None = None) -> BoundTerms:
    """The bound's terms from embeddings alone; `*_output` = (model-answer, reference-answer) embeddings."""
    return BoundTerms(representation_jsd(p_image, q_image), representation_jsd(p_text, q_text),
                      representation_jsd(*p_output) if p_output is not None else None,
                      representation_jsd(*q_output) if q_output is not None else None)
