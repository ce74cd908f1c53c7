"""CLUB estimators on disk: the file a run saves (format `FORMAT_VERSION`) and the bare state dict of the EMI
repository's CLUB (e.g. its released `estimator_ckpt/CLUB_global.pt`), which loads as `club-reference`.
Anything else is a ConfigError naming the file, so that `--emi-estimator` fails before a run generates."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from vittle_bench.errors import ConfigError
from vittle_bench.metrics.club_net import REFERENCE, ClubConfig, ClubNet, identity_scaling

FORMAT_VERSION = 2  # format 1 (before the estimator had a name) is refused with a message to re-fit
SCALING_FIELDS = ("x_mean", "x_std", "y_mean", "y_std")


class ClubCheckpoint(NamedTuple):
    """Everything a checkpoint holds, in the field order of `ClubEstimator`."""

    net: ClubNet
    x_mean: np.ndarray
    x_std: np.ndarray
    y_mean: np.ndarray
    y_std: np.ndarray
    config: ClubConfig
    history: dict[str, Any]
    meta: dict[str, Any]


def save_checkpoint(checkpoint: ClubCheckpoint, path: Path | str) -> None:
    """Write a checkpoint that `load_checkpoint` reads back to the same estimator (the same fingerprint); the
    per-epoch validation curve is left out, the rest of the fit's history kept."""
    torch.save({"format": FORMAT_VERSION, "x_dim": len(checkpoint.x_mean), "y_dim": len(checkpoint.y_mean),
                "config": asdict(checkpoint.config), "state": checkpoint.net.state_dict(),
                **{name: getattr(checkpoint, name).tolist() for name in SCALING_FIELDS},
                "history": {k: v for k, v in checkpoint.history.items() if k != "val_nll"},
                "meta": checkpoint.meta}, path)


def load_checkpoint(path: Path | str) -> ClubCheckpoint:
    """A checkpoint written by `save_checkpoint`, or a state dict in the EMI repository's CLUB layout (`p_mu.*` /
    `p_logvar.*`)."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError(f"estimator {path}: no such file") from None
    except Exception as exc:  # noqa: BLE001 - torch raises many kinds for a file that is not a checkpoint
        raise ConfigError(f"estimator {path}: not a readable torch checkpoint ({type(exc).__name__})") from None
    if isinstance(blob, Mapping) and blob.get("format") == FORMAT_VERSION:
        try:
            return _from_saved(blob, path)
        except (KeyError, TypeError) as exc:  # a missing or unknown field
            raise ConfigError(f"estimator {path}: malformed ({type(exc).__name__}: {exc})") from None
    if isinstance(blob, Mapping) and blob.get("format") is not None:
        raise ConfigError(f"estimator {path}: saved in format {blob.get('format')!r} by another version; "
                          f"fit it again (this version reads format {FORMAT_VERSION})")
    if isinstance(blob, Mapping) and any(str(k).startswith(("p_mu.", "p_logvar.")) for k in blob):
        return _from_reference_state(blob, path)
    raise ConfigError(f"estimator {path}: not a CLUB estimator (neither saved by vittle-bench nor a state dict "
                      "of p_mu.* / p_logvar.* weights)")


def _from_saved(blob: Mapping[str, Any], path: Path | str) -> ClubCheckpoint:
    config = ClubConfig(**blob["config"])
    net = ClubNet(blob["x_dim"], blob["y_dim"], config.hidden, config.logvar_bound)
    _load_state(net, blob["state"], path)
    x_mean, x_std, y_mean, y_std = (np.asarray(blob[k], dtype=np.float64) for k in SCALING_FIELDS)
    return ClubCheckpoint(net, x_mean, x_std, y_mean, y_std, config, dict(blob["history"]), dict(blob["meta"]))


def _from_reference_state(state: Mapping[str, Any], path: Path | str) -> ClubCheckpoint:
    expected = {f"{head}.{layer}.{p}" for head in ("p_mu", "p_logvar") for layer in (0, 2)
                for p in ("weight", "bias")}
    if set(state) != expected:
        raise ConfigError(f"estimator {path}: not the EMI repository's CLUB layout (missing "
                          f"{sorted(expected - set(state))}, unexpected {sorted(set(state) - expected)})")
    hidden, x_dim = state["p_mu.0.weight"].shape
    y_dim = state["p_mu.2.weight"].shape[0]
    net = ClubNet(x_dim, y_dim, hidden, REFERENCE.logvar_bound)
    _load_state(net, state, path)
    (x_mean, x_std), (y_mean, y_std) = identity_scaling(x_dim), identity_scaling(y_dim)
    return ClubCheckpoint(net, x_mean, x_std, y_mean, y_std, replace(REFERENCE, hidden=hidden),
                          {"loaded": str(path)}, {})


def _load_state(net: ClubNet, state: Mapping[str, Any], path: Path | str) -> None:
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:  # shapes that do not fit one another
        raise ConfigError(f"estimator {path}: inconsistent weights ({str(exc).splitlines()[-1].strip()})") from None
    net.eval()
