"""Run directories -> paper-style leaderboards with confidence intervals (CSV, LaTeX, Markdown, HTML).

Rows are (task, model); columns are clean and the mean over the shift conditions of each group (by default
each shift kind, like the paper's Table 1). Rates (accuracy, F1, ...) are shown in percent; relative scores are
already 0-100. Any number of run directories merge (models are usually run separately).

What the interval means: a 95 % percentile bootstrap interval over *samples*, seeded. A column that is one
shift condition reuses that cell's interval from results.csv. A column that averages several conditions is
resampled in pairs from samples.jsonl: each bootstrap draw picks one multiset of sample ids and applies it to
every condition, so the interval of the average accounts for the same images and questions recurring under
every shift. "±" prints half the width of that interval (percentile intervals can be slightly asymmetric; the
CSV keeps both ends). Without samples.jsonl such a column has no interval.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from vittle_bench.adapters.base import declared_metric
from vittle_bench.errors import ConfigError
from vittle_bench.metrics import stats
from vittle_bench.metrics.base import Metric, split_name
from vittle_bench.metrics.grid import SampleGrid
from vittle_bench.schema import KINDS, RESULT_COLUMNS

KIND_ORDER = KINDS  # the leaderboard's column groups, in the order shifts declare their kinds
GROUP_BYS = ("shift_kind", "shift", "severity", "condition")
SAMPLE_FIELDS = ("model", "task", "condition", "shift", "shift_kind", "severity", "sample_id", "answer", "parsed",
                 "parse_ok", "score", "reference_score", "category", "error")
LONG_COLUMNS = ["task", "model", "metric", "unit", "higher_is_better", "group", "shift_kind", "value", "ci_low",
                "ci_high", "ci_method", "n_conditions", "n", "n_errors", "relative_robustness", "flip_rate",
                "severity_auc"]
CELL_KEY = ["model", "task", "condition", "metric"]


def _file(run_dir: Path, name: str) -> Path:
    """`name` inside a run directory, or next to a results.csv passed instead of its directory."""
    return run_dir.parent / name if run_dir.is_file() else run_dir / name


def _flag(values: pd.Series) -> pd.Series:
    """results.csv's true / false / empty (no direction) as True / False / None."""
    return values.map(lambda v: {"true": True, "false": False}.get(str(v).strip().lower()))


def read_results(path: Path) -> pd.DataFrame:
    """One results.csv, checked: a file we cannot trust is refused with one line naming it."""
    try:
        text = path.read_text()
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ConfigError(f"{path}: not a readable results.csv ({type(exc).__name__})") from None
    missing = [c for c in RESULT_COLUMNS if c not in frame.columns]
    if missing:
        raise ConfigError(f"{path}: no {', '.join(missing)} column{'s' if len(missing) > 1 else ''}; it was written "
                          "by an older vittle-bench (rates as 0-1, joint conditions not told apart): rerun "
                          "`vittle-bench run` with the same arguments to rewrite it (cached answers make that quick)")
    if frame.empty or not text.endswith("\n"):
        raise ConfigError(f"{path}: {'no result rows' if frame.empty else 'the last line is cut off'}; rerun the run "
                          "that wrote it")
    for column in ("value", "ci_low", "ci_high", "severity", "n", "ci_undefined"):
        numbers = pd.to_numeric(frame[column].replace("", np.nan), errors="coerce")
        bad = numbers.isna() & ~frame[column].isin(["", "nan"])
        if bad.any():
            line = int(np.flatnonzero(bad)[0]) + 2
            raise ConfigError(f"{path}:{line}: {column} {frame[column][bad].iloc[0]!r} is not a number")
        frame[column] = numbers
    frame["higher_is_better"] = _flag(frame["higher_is_better"])
    frame["primary"] = _flag(frame["primary"]).fillna(False).astype(bool)
    return frame


def load_results(run_dirs: list[Path]) -> pd.DataFrame:
    """results.csv of every run, later runs winning on a duplicate (model, task, condition, metric)."""
    frames = []
    for run_dir in run_dirs:
        path = _file(Path(run_dir), "results.csv")
        if not path.is_file():
            raise ConfigError(f"{path} not found: pass run directories written by `vittle-bench run`")
        frames.append(read_results(path))
    results = pd.concat(frames, ignore_index=True)
    return results.drop_duplicates(subset=CELL_KEY, keep="last").reset_index(drop=True)


def load_samples(run_dirs: list[Path], fields: Sequence[str] = SAMPLE_FIELDS) -> pd.DataFrame:
    """The scoring fields (or `fields`) of samples.jsonl of every run that has one."""
    records = []
    for run_dir in run_dirs:
        path = _file(Path(run_dir), "samples.jsonl")
        if path.is_file():
            with path.open() as f:
                for number, line in enumerate(f, start=1):
                    if not line.strip():
                        continue
                    try:
                        record = json.loads(line)
                    except json.JSONDecodeError:
                        raise ConfigError(f"{path}:{number}: not a JSON record (cut off?); rerun the run that "
                                          "wrote it") from None
                    records.append({k: record.get(k) for k in fields})
    frame = pd.DataFrame.from_records(records, columns=list(fields))
    frame["sample_id"] = frame["sample_id"].astype(str)
    return frame.drop_duplicates(subset=["model", "task", "condition", "sample_id"], keep="last")


def choose_metric(rows: pd.DataFrame, metric: str | None, task: str) -> str | None:
    """The metric a table shows for one task x model: the named one (a base name such as `emi` matches its
    qualified forms, which must then agree), else the one results.csv marks as the task's headline."""
    available = list(dict.fromkeys(rows["metric"]))
    if metric is None:
        primary = list(dict.fromkeys(rows.loc[rows["primary"], "metric"]))
        return primary[0] if primary else None
    if metric in available:
        return metric
    qualified = [m for m in available if split_name(m)[0] == metric and not split_name(m)[2]]
    if len(qualified) > 1:
        raise ConfigError(f"task {task}: {metric} comes from different estimators or encoders "
                          f"({', '.join(qualified)}), which cannot share a column; name one with --metric")
    return qualified[0] if qualified else None


def _refuse_mixed_qualifiers(chosen: dict[tuple[str, str], str | None]) -> None:
    """One task's column may not hold one metric under different qualifiers (EMI from different estimators or
    encoders is not comparable); different metrics (a judge's and a stand-in's score) stay separate rows."""
    by_task: dict[str, set[str]] = {}
    for (task, _), name in chosen.items():
        if name is not None:
            by_task.setdefault(task, set()).add(name)
    for task, names in sorted(by_task.items()):
        bases = [split_name(n)[0] for n in names]
        mixed = sorted(n for n in names if bases.count(split_name(n)[0]) > 1)
        if mixed:
            raise ConfigError(f"task {task}: {split_name(mixed[0])[0]} comes from different estimators or encoders "
                              f"across these runs ({', '.join(mixed)}), which cannot share a column; show one with "
                              "--metric NAME, or rerun with the same --emi-estimator FILE")


# --- aggregation -------------------------------------------------------------------------------------------

def _group_of(condition: str, shift: str, kind: str, severity: int, group_by: str) -> str:
    if kind == "clean":
        return "clean"
    return {"shift_kind": kind, "shift": shift, "severity": f"sev{int(severity)}", "condition": condition}[group_by]


def column_order_key(group: str, kind: str) -> tuple:
    natural = [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", group)]
    return (KIND_ORDER.index(kind) if kind in KIND_ORDER else len(KIND_ORDER), natural)


ColumnOf = Callable[[str, str, str], "str | None"]  # (task, condition, shift kind) -> column, None: left out


def aggregate(results: pd.DataFrame, samples: pd.DataFrame | None = None, metric: str | None = None,
              group_by: str = "shift_kind", seed: int = 0, n_boot: int = stats.N_BOOTSTRAP,
              confidence: float = stats.CONFIDENCE, columns: ColumnOf | None = None) -> pd.DataFrame:
    """The long, tidy leaderboard: one row per (task, model, metric, column group), in results.csv's units.
    `columns` (an evaluation plan's layout) replaces `group_by`: it names each cell's column."""
    if group_by not in GROUP_BYS:
        raise ConfigError(f"unknown --group-by {group_by!r}; choose from {', '.join(GROUP_BYS)}")
    rows: list[dict] = []
    chosen_of = {key: choose_metric(cells, metric, str(key[0])) for key, cells in results.groupby(["task", "model"])}
    _refuse_mixed_qualifiers(chosen_of)
    for (task, model), cells in results.groupby(["task", "model"], sort=True):
        chosen = chosen_of[task, model]
        if chosen is None:
            continue
        errors = cells[cells["metric"] == "n_errors"].set_index("condition")["value"]
        records = None if samples is None else samples[(samples["task"] == task) & (samples["model"] == model)]
        chosen_cells = cells[cells["metric"] == chosen]
        if columns is not None:
            chosen_cells = chosen_cells.assign(group=[columns(str(task), c, k) for c, k in
                                                      zip(chosen_cells["condition"], chosen_cells["shift_kind"])])
            chosen_cells = chosen_cells[chosen_cells["group"].notna()]
        rows += _model_rows(str(task), str(model), chosen, chosen_cells, errors, records,
                            declared_metric(chosen), group_by, stats.cell_seed(seed, str(task), str(model)), n_boot,
                            confidence)
    return pd.DataFrame(rows, columns=LONG_COLUMNS)


def _model_rows(task: str, model: str, metric: str, cells: pd.DataFrame, errors: pd.Series,
                records: pd.DataFrame | None, spec: Metric | None, group_by: str, seed: int, n_boot: int,
                confidence: float) -> list[dict]:
    if "group" not in cells:  # else named by an evaluation plan's columns
        cells = cells.assign(group=[_group_of(c, s, k, v, group_by) for c, s, k, v in
                                    zip(cells["condition"], cells["shift"], cells["shift_kind"], cells["severity"])])
    cells = cells.assign(n_err=[errors.get(c, 0.0) for c in cells["condition"]])
    grid, weights = None, None
    if spec is not None and spec.parts is not None and records is not None and not records.empty:
        ids = sorted(set(records["sample_id"]))
        grid = SampleGrid.build(records, list(dict.fromkeys(["clean", *cells["condition"]])), ids, spec)
        weights = stats.resample_weights(len(ids), seed, n_boot)
    clean = cells[cells["shift_kind"] == "clean"]["value"]
    clean_value = float(clean.mean()) if len(clean) else float("nan")
    out = []
    for group, g in cells.groupby("group", sort=False):
        kinds = set(g["shift_kind"])
        kind = kinds.pop() if len(kinds) == 1 else "shifted"
        value = float(g["value"].mean())
        low = high = None
        method = "none"
        if len(g) == 1 and pd.notna(g["ci_low"].iloc[0]):
            low, high, method = g["ci_low"].iloc[0], g["ci_high"].iloc[0], "cell bootstrap"
        elif grid is not None and spec is not None and set(g["condition"]) <= grid.present:
            sel = grid.rows(list(g["condition"]))
            _, lo, hi = stats.ratio_bootstrap(grid.num[sel], grid.den[sel], seed, n_boot, confidence, spec.zero,
                                              weights=weights)
            if lo is not None and hi is not None:
                low, high, method = lo * spec.scale, hi * spec.scale, "paired bootstrap"
        flips = float("nan")
        if spec is not None and spec.binary and grid is not None and group != "clean" and "clean" in grid.present:
            rates = [grid.flip_rate(c) for c in g["condition"] if c in grid.present]
            flips = 100 * float(np.mean(rates)) if rates else float("nan")
        auc = float("nan")
        if group_by == "shift" and group != "clean" and np.isfinite(clean_value):
            curve = g.groupby("severity")["value"].mean()
            auc = stats.severity_auc(np.r_[0, curve.index.to_numpy()], np.r_[clean_value, curve.to_numpy()])
        out.append({
            "task": task, "model": model, "metric": metric, "unit": g["unit"].iloc[0],
            "higher_is_better": g["higher_is_better"].iloc[0], "group": group, "shift_kind": kind, "value": value,
            "ci_low": low, "ci_high": high, "ci_method": method, "n_conditions": len(g), "n": int(g["n"].sum()),
            "n_errors": int(g["n_err"].sum()),
            "relative_robustness": (stats.relative_robustness(value, clean_value) if np.isfinite(clean_value)
                                    else np.nan),
            "flip_rate": flips, "severity_auc": auc})
    return sorted(out, key=lambda r: column_order_key(r["group"], r["shift_kind"]))


def widen(long: pd.DataFrame, order: list[str] | None = None) -> pd.DataFrame:
    """Paper-style table: task, model, metric, then per group `g`, `g ci_low`, `g ci_high`; `n_errors` (total
    over the row's cells) only when some cell failed; last the metric's unit and direction. Groups come in
    `order` (an evaluation plan's columns), else clean, then by shift kind."""
    if long.empty:
        return pd.DataFrame(columns=["task", "model", "metric"])
    kinds = long.groupby("group")["shift_kind"].first()
    first = order or []
    groups = sorted(kinds.index, key=lambda g: (first.index(g) if g in first else len(first),
                                                column_order_key(g, kinds[g])))
    index = ["task", "model", "metric"]
    described = long[index + ["unit", "higher_is_better"]].drop_duplicates(index).reset_index(drop=True)
    table = described[index].copy()
    keys = list(zip(table["task"], table["model"], table["metric"]))
    for group in groups:
        part = long[long["group"] == group].set_index(index)
        for source, column in (("value", group), ("ci_low", f"{group} ci_low"), ("ci_high", f"{group} ci_high")):
            table[column] = [part[source].get(k, np.nan) for k in keys]
    totals = long.groupby(index, sort=False)["n_errors"].sum()
    if totals.any():
        table["n_errors"] = [int(totals.get(k, 0)) for k in keys]
    table["unit"], table["higher_is_better"] = described["unit"], described["higher_is_better"]
    return table


def build_table(run_dirs: list[Path], metric: str | None = None, group_by: str = "shift_kind",
                layout: str = "wide", seed: int = 0, n_boot: int = stats.N_BOOTSTRAP,
                confidence: float = stats.CONFIDENCE, columns: ColumnOf | None = None,
                order: list[str] | None = None) -> pd.DataFrame:
    """Everything `vittle-bench leaderboard` computes, from run directories (`columns` and `order`: an
    evaluation plan's layout)."""
    long = aggregate(load_results(run_dirs), load_samples(run_dirs), metric, group_by, seed, n_boot, confidence,
                     columns)
    if long.empty:
        raise ConfigError(f"no task in these runs has the metric {metric!r}" if metric else "no results to show")
    return long if layout == "long" else widen(long, order)
