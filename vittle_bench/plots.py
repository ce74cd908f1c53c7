"""Figures for papers: severity curves with CI bands, clean-vs-shift scatter, per-shift bar chart of B - A.

matplotlib is an optional extra (`pip install 'vittle-bench[plots]'`); it is imported only when a plot is
asked for. We draw on `matplotlib.figure.Figure` directly (no pyplot), so plotting never touches a user's
interactive backend, and write PNG and PDF without timestamps, so the same inputs give the same files.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm import tqdm

from vittle_bench.errors import ConfigError
from vittle_bench.leaderboard import aggregate, choose_metric
from vittle_bench.metrics.base import PERCENT

KIND_MARKERS = {"image": "o", "text": "s", "joint": "^", "domain": "D"}


def _figure(width: float, height: float):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError("plots need matplotlib: pip install 'vittle-bench[plots]'") from None
    return Figure(figsize=(width, height), layout="constrained")


def _save(fig, out_dir: Path, stem: str) -> list[Path]:
    """`stem`.png and `stem`.pdf; no creation dates or software versions, so reruns are byte-identical."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create plot directory {out_dir} ({exc.strerror})") from None
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)
    png, pdf = out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"
    fig.savefig(png, dpi=150, metadata={"Software": None})
    fig.savefig(pdf, metadata={"CreationDate": None, "Producer": None, "Creator": None})
    return [png, pdf]


def _curve_point(condition: str, shift: str, severity: int) -> tuple[str, str, int]:
    """(panel, line, x) of a shifted cell: a single shift is one line over its severities; a joint condition
    `img@i+txt@t` is a point at x = i on the line `txt@t` of the panel `img+txt`, so joint conditions that
    differ only in a part's severity stay apart."""
    parts = condition.split("+")
    if len(parts) != 2:
        return shift, "", int(severity)
    image, text = parts
    return shift, text, int(image.rpartition("@")[2])


def severity_curves(results: pd.DataFrame, out_dir: Path, metric: str | None = None) -> list[Path]:
    """Per task, one panel per shift family: the metric against severity (0 = clean), one line per model,
    shaded by each cell's bootstrap interval from results.csv."""
    written: list[Path] = []
    _figure(1, 1)  # fails early, with the install hint, when matplotlib is missing
    from matplotlib.ticker import MaxNLocator

    tasks = tqdm(results.groupby("task", sort=True), total=results["task"].nunique(), desc="severity plots",
                 unit="task", file=sys.stderr, leave=False)
    for task, rows in tasks:
        chosen = choose_metric(rows, metric, str(task))
        if chosen is None:
            continue
        cells = rows[(rows["metric"] == chosen) & rows["shift_kind"].isin(["clean", "image", "text", "joint"])]
        points = [_curve_point(c, s, v) for c, s, v in zip(cells["condition"], cells["shift"], cells["severity"])]
        cells = cells.assign(panel=[p[0] for p in points], line=[p[1] for p in points], x=[p[2] for p in points])
        families = sorted(set(cells.loc[cells["shift_kind"] != "clean", "panel"]))
        if not families:
            continue
        cols = min(4, len(families))
        fig = _figure(3.2 * cols, 2.6 * int(np.ceil(len(families) / cols)))
        axes = fig.subplots(int(np.ceil(len(families) / cols)), cols, squeeze=False, sharey=True).ravel()
        for ax, family in zip(axes, families):
            for model, m in cells.groupby("model", sort=False):
                shifted = m[m["panel"] == family]
                for line_name, part in shifted.groupby("line", sort=True):
                    curve = pd.concat([m[m["shift_kind"] == "clean"], part]).sort_values("x")
                    x = curve["x"].to_numpy(dtype=float)
                    label = f"{model} ({line_name})" if line_name else model
                    line, = ax.plot(x, curve["value"], marker="o", ms=3, label=label)
                    low, high = curve["ci_low"].to_numpy(dtype=float), curve["ci_high"].to_numpy(dtype=float)
                    ax.fill_between(x, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
            ax.set_title(family, fontsize=9)
            ax.set_xlabel("severity" if "+" not in family else "image severity")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.legend(fontsize=6)
        for ax in axes[len(families):]:
            ax.set_visible(False)
        axes[0].set_ylabel(f"{chosen}{' (%)' if cells['unit'].iloc[0] == PERCENT else ''}")
        fig.suptitle(f"{task}: {chosen} vs severity (bands: 95% CI)", fontsize=10)
        written += _save(fig, out_dir, f"severity_{task}")
    return written


def clean_vs_shift(results: pd.DataFrame, out_dir: Path, metric: str | None = None,
                   samples: pd.DataFrame | None = None, seed: int = 0) -> list[Path]:
    """Clean value (x) against each shift kind's average (y) for every task x model; below the diagonal is
    what the shift costs. Error bars: 95% intervals (those of kind averages need `samples`)."""
    long = aggregate(results, samples, metric, seed=seed)
    if long.empty:
        raise ConfigError("nothing to plot: no task has the chosen metric")
    clean = long[long["group"] == "clean"].set_index(["task", "model"])
    fig = _figure(5.0, 4.2)
    ax = fig.subplots()
    models = list(dict.fromkeys(long["model"]))
    colors = {m: f"C{i % 10}" for i, m in enumerate(models)}
    for row in long[long["group"] != "clean"].itertuples():
        if (row.task, row.model) not in clean.index:
            continue
        c = clean.loc[(row.task, row.model)]
        xerr = None if pd.isna(c["ci_low"]) else [[c["value"] - c["ci_low"]], [c["ci_high"] - c["value"]]]
        yerr = None if pd.isna(row.ci_low) else [[row.value - row.ci_low], [row.ci_high - row.value]]
        ax.errorbar(c["value"], row.value, xerr=xerr, yerr=yerr, fmt=KIND_MARKERS.get(row.shift_kind, "x"),
                    color=colors[row.model], ms=5, elinewidth=0.6, capsize=0)
    lo = float(np.nanmin(long["value"])) - 5
    hi = float(np.nanmax(long["value"])) + 5
    ax.plot([lo, hi], [lo, hi], color="grey", lw=0.8, ls="--")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_xlabel("clean")
    ax.set_ylabel("shifted (mean over the kind's conditions)")
    handles = [ax.plot([], [], "o", color=colors[m], label=m)[0] for m in models]
    handles += [ax.plot([], [], KIND_MARKERS[k], color="black", label=k)[0]
                for k in KIND_MARKERS if k in set(long["shift_kind"])]
    ax.legend(handles=handles, fontsize=7)
    ax.set_title("clean vs shifted (rates in %, relative scores 100 x model / reference)", fontsize=9)
    return _save(fig, out_dir, "clean_vs_shift")


def leaderboard_plots(results: pd.DataFrame, out_dir: Path, metric: str | None = None,
                      samples: pd.DataFrame | None = None, seed: int = 0) -> list[Path]:
    return severity_curves(results, out_dir, metric) + clean_vs_shift(results, out_dir, metric, samples, seed)


def difference_bars(comparison: pd.DataFrame, out_dir: Path) -> list[Path]:
    """One panel per task of `compare`'s table: B - A per condition and per kind mean, with its paired CI;
    filled bars where the interval excludes 0."""
    tasks = list(dict.fromkeys(comparison["task"]))
    height = sum(0.25 * (comparison["task"] == t).sum() + 0.8 for t in tasks)
    fig = _figure(6.0, max(2.5, height))
    axes = fig.subplots(len(tasks), 1, squeeze=False).ravel()
    for ax, task in zip(axes, tasks):
        t = comparison[comparison["task"] == task].iloc[::-1]
        labels = [r.condition if r.scope == "cell" else f"{r.shift_kind} mean" for r in t.itertuples()]
        y = np.arange(len(t))
        low, high = t["ci_low"].astype(float).to_numpy(), t["ci_high"].astype(float).to_numpy()
        diff = t["diff"].astype(float).to_numpy()
        significant = (low > 0) | (high < 0)
        colors = ["C2" if d > 0 else "C3" for d in diff]
        ax.barh(y, diff, color=[c if s else "white" for c, s in zip(colors, significant)], edgecolor=colors)
        ax.errorbar(diff, y, xerr=[diff - low, high - diff], fmt="none", ecolor="black", elinewidth=0.8, capsize=2)
        ax.axvline(0, color="grey", lw=0.8)
        ax.set_yticks(y, labels, fontsize=7)
        first = t.iloc[0]
        unit = " (pp)" if first["unit"] == "pp" else ""
        ax.set_title(f"{task}: {first['metric']}, {first['model_b']} − {first['model_a']}{unit}", fontsize=9)
    return _save(fig, out_dir, "difference")
