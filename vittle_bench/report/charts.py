"""Severity curves as plain SVG geometry (the page draws them; no plotting library or script is needed).

One chart per task and shift that has several severities: per model its headline metric at severity 0 (clean)
and at each severity of the shift, with the cells' bootstrap intervals as a band.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

WIDTH, HEIGHT, PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 300, 180, 44, 10, 10, 28
PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")


@dataclass(frozen=True)
class Line:
    model: str
    colour: str
    points: str  # SVG polyline points
    band: str  # SVG polygon points of the interval ("" without intervals)
    values: tuple[tuple[int, float], ...]  # (severity, value), for the chart's title text


@dataclass(frozen=True)
class Chart:
    task: str
    shift: str
    metric: str
    lines: tuple[Line, ...]
    x_ticks: tuple[tuple[float, str], ...]
    y_ticks: tuple[tuple[float, str], ...]


def _scale(lo: float, hi: float, size: float, start: float, flip: bool):
    span = hi - lo or 1.0

    def at(v: float) -> float:
        f = (v - lo) / span
        return round(start + (1 - f if flip else f) * size, 1)
    return at


def severity_charts(primary: pd.DataFrame, colours: dict[str, str]) -> list[Chart]:
    """`primary`: results.csv rows of each task's headline metric. Joint conditions (`a@3+b@3`) and domains
    are no point on a severity axis and are left to the tables."""
    charts = []
    single = primary[(primary["shift_kind"].isin(["image", "text"])) & ~primary["condition"].str.contains("+",
                                                                                                           regex=False)]
    for (task, shift), cells in single.groupby(["task", "shift"], sort=False):
        if cells["severity"].nunique() < 2:
            continue
        clean = primary[(primary["task"] == task) & (primary["shift_kind"] == "clean")]
        series = pd.concat([clean, cells]).assign(severity=lambda f: f["severity"].astype(int))
        charts.append(_chart(str(task), str(shift), series, colours))
    return charts


def _chart(task: str, shift: str, series: pd.DataFrame, colours: dict[str, str]) -> Chart:
    values = pd.concat([series["value"], series["ci_low"], series["ci_high"]]).astype(float)
    values = values[values.map(math.isfinite)]
    lo, hi = float(values.min()), float(values.max())
    pad = (hi - lo) * 0.08 or 1.0
    lo, hi = lo - pad, hi + pad
    x_max = int(series["severity"].max())
    x = _scale(0, x_max, WIDTH - PAD_LEFT - PAD_RIGHT, PAD_LEFT, flip=False)
    y = _scale(lo, hi, HEIGHT - PAD_TOP - PAD_BOTTOM, PAD_TOP, flip=True)
    lines = []
    for model, rows in series.sort_values("severity").groupby("model", sort=False):
        pts = " ".join(f"{x(s)},{y(v)}" for s, v in zip(rows["severity"], rows["value"].astype(float)))
        band = ""
        if rows["ci_low"].notna().all() and rows["ci_high"].notna().all():
            upper = [f"{x(s)},{y(v)}" for s, v in zip(rows["severity"], rows["ci_high"].astype(float))]
            lower = [f"{x(s)},{y(v)}" for s, v in zip(rows["severity"], rows["ci_low"].astype(float))]
            band = " ".join(upper + lower[::-1])
        lines.append(Line(str(model), colours.get(str(model), PALETTE[0]), pts, band,
                          tuple(zip(rows["severity"].astype(int), rows["value"].astype(float).round(1)))))
    x_ticks = tuple((x(s), str(s)) for s in range(0, x_max + 1))
    step = _nice_step((hi - lo) / 4)
    first = math.ceil(lo / step) * step
    y_ticks = tuple((y(v), f"{v:g}") for v in _range(first, hi, step))
    return Chart(task, shift, str(series["metric"].iloc[0]), tuple(lines), x_ticks, y_ticks)


def _nice_step(raw: float) -> float:
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)


def _range(start: float, stop: float, step: float) -> list[float]:
    out, v = [], start
    while v <= stop + 1e-9:
        out.append(round(v, 6))
        v += step
    return out
