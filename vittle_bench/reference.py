"""Published reference rows: numbers a paper reports, kept as data with their citations (`leaderboards/paper/`),
placed in a wide leaderboard beside the measured rows.

A reference CSV holds one published number per row: `model` (the paper's label), `task`, `layout` (the table the
number belongs in: `shift_kind`, the default, or an evaluation plan's name, whose `columns` are the paper's), `column`
(in the `shift_kind` layout a shift kind, or `shifted` for an average over every shift; in a plan's layout one of
its columns), `metric` (a declared metric name: its unit and direction come from the declaration), `value` (in
that unit), `source` (paper and table) and `note`. A table shows the rows of its own layout only, so a published
average is never set beside a measured one over other conditions (the paper's Text average includes three
translations, which the shift-kind layout counts as domain shifts).

Rules the table follows:
- A published row is shown under the label `published:<model>`, without an interval, for a task on the table
  whose shown metric has the same base name (`emid` beside `emid[...]`; `relative_score` never beside the
  offline stand-in's `relative_score_overlap`).
- A difference row `Δ <measured> vs published:<model>` (measured − published) exists only for the pairs the user
  names, and only where task, column and the metric name itself are the same: a stand-in scorer or an EMI
  estimate from other encoders or another estimator is never subtracted from the paper's number.
- Published and difference rows never enter the bold best (render compares `row == "measured"` rows only).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from vittle_bench.adapters.base import declared_metric
from vittle_bench.errors import ConfigError
from vittle_bench.metrics.base import split_name
from vittle_bench.schema import KINDS

REFERENCE_COLUMNS = ("model", "task", "layout", "column", "metric", "value", "source", "note")
KIND_LAYOUT = "shift_kind"
REQUIRED = ("model", "task", "column", "metric", "value", "source")
COLUMNS = (*KINDS, "shifted")  # what a published number may average: one shift kind, or every shift
PAPER_DIR = Path(__file__).resolve().parent.parent / "leaderboards" / "paper"
PUBLISHED = "published:"
ROW, SOURCE = "row", "source"  # the wide table's columns telling measured, published and difference rows apart
ROW_ORDER = ("measured", "published", "difference")


def reference_files(spec: str) -> list[Path]:
    """The CSV files `--reference` names: `paper` (every CSV in leaderboards/paper/), a folder of CSVs, or one."""
    path = PAPER_DIR if spec == "paper" else Path(spec)
    if path.is_dir():
        found = sorted(path.glob("*.csv"))
        if not found:
            raise ConfigError(f"--reference {spec}: {path} holds no .csv file")
        return found
    if path.is_file():
        return [path]
    if spec == "paper":
        raise ConfigError(f"--reference paper: {PAPER_DIR} not found (it comes with the source checkout); pass "
                          "the path of a reference CSV instead")
    raise ConfigError(f"--reference {spec}: no such file or folder; pass `paper` or a reference CSV")


def read_reference(path: Path) -> pd.DataFrame:
    """One reference CSV, checked: a file we cannot trust is refused with one line naming it."""
    try:
        text = path.read_text()
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ConfigError(f"{path}: not a readable reference CSV ({type(exc).__name__})") from None
    missing = [c for c in REQUIRED if c not in frame.columns]
    if missing:
        raise ConfigError(f"{path}: no {', '.join(missing)} column{'s' if len(missing) > 1 else ''}; a reference "
                          f"CSV has the columns {', '.join(REFERENCE_COLUMNS)} (leaderboards/paper/README.md)")
    if frame.empty or not text.endswith("\n"):
        raise ConfigError(f"{path}: {'no rows' if frame.empty else 'the last line is cut off'}")
    frame = frame.assign(note=frame["note"] if "note" in frame.columns else "",
                         layout=frame["layout"].replace("", KIND_LAYOUT) if "layout" in frame.columns
                         else KIND_LAYOUT)[list(REFERENCE_COLUMNS)]
    values, seen = [], set()
    for line, row in enumerate(frame.itertuples(index=False), start=2):
        where = f"{path}:{line}"
        empty = [c for c in REQUIRED if not str(getattr(row, c)).strip()]
        if empty:
            raise ConfigError(f"{where}: empty {empty[0]}")
        if row.layout == KIND_LAYOUT and row.column not in COLUMNS:
            raise ConfigError(f"{where}: column {row.column!r} is not one of {', '.join(COLUMNS)} (the shift-kind "
                              "layout; a plan's columns need `layout: PLAN`)")
        if declared_metric(row.metric) is None:
            raise ConfigError(f"{where}: metric {row.metric!r} is not a declared metric")
        try:
            value = float(row.value)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise ConfigError(f"{where}: value {row.value!r} is not a number")
        key = (row.model, row.task, row.layout, row.column, row.metric)
        if key in seen:
            raise ConfigError(f"{where}: a second value for {' / '.join(key)}")
        seen.add(key)
        values.append(value)
    return frame.assign(value=values)


def load_reference(spec: str, layout: str = KIND_LAYOUT) -> pd.DataFrame:
    """The published rows `--reference` names for a table in `layout` (`shift_kind`, or a plan's name); one
    number given twice across files is refused."""
    frames = [read_reference(path).assign(file=str(path)) for path in reference_files(spec)]
    reference = pd.concat(frames, ignore_index=True)
    twice = reference.duplicated(subset=["model", "task", "layout", "column", "metric"], keep=False)
    if twice.any():
        row = reference[twice].iloc[0]
        files = ", ".join(dict.fromkeys(reference.loc[twice, "file"]))
        raise ConfigError(f"--reference {spec}: {row['model']} / {row['task']} / {row['column']} / {row['metric']} "
                          f"is given twice ({files})")
    return reference[reference["layout"] == layout].drop(columns=["file", "layout"]).reset_index(drop=True)


def parse_pairs(specs: list[str] | None) -> list[tuple[str, str]]:
    """`--reference-model MEASURED=PUBLISHED` options (split at the first `=`; `published:` is optional)."""
    pairs = []
    for spec in specs or []:
        measured, sep, published = spec.partition("=")
        published = published.removeprefix(PUBLISHED)
        if not sep or not measured or not published:
            raise ConfigError(f"--reference-model {spec!r}: write MEASURED=PUBLISHED, e.g. "
                              "hf:llava-hf/llava-1.5-7b-hf=LLaVA-1.5-7B")
        pairs.append((measured, published))
    return pairs


def _value_columns(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if f"{c} ci_low" in table.columns]


def shown_rows(table: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """The published rows for the table's tasks whose metric has the base name of a metric shown for that task."""
    bases = {(task, split_name(metric)[0]) for task, metric in zip(table["task"], table["metric"])}
    keep = [(task, split_name(metric)[0]) in bases for task, metric in zip(reference["task"], reference["metric"])]
    return reference[keep]


def _published_table(shown: pd.DataFrame) -> list[dict]:
    rows = []
    for (model, task, metric), cells in shown.groupby(["model", "task", "metric"], sort=False):
        spec = declared_metric(str(metric))
        rows.append({"task": task, "model": PUBLISHED + str(model), "metric": metric,
                     **dict(zip(cells["column"], cells["value"])), "unit": spec.unit if spec else "",
                     "higher_is_better": spec.higher_is_better if spec else None, ROW: "published",
                     SOURCE: "; ".join(dict.fromkeys(cells["source"]))})
    return rows


def _differences(table: pd.DataFrame, published: list[dict], reference: pd.DataFrame,
                 pairs: list[tuple[str, str]], groups: list[str]) -> list[dict]:
    """measured − published per column, for each named pair, where task and metric name are the same."""
    rows = []
    for measured, label in pairs:
        if measured not in set(table["model"]):
            raise ConfigError(f"--reference-model {measured}={label}: no measured model {measured!r} on this table "
                              f"(models: {', '.join(dict.fromkeys(table['model']))})")
        if label not in set(reference["model"]):
            raise ConfigError(f"--reference-model {measured}={label}: no published model {label!r} in the reference "
                              f"(models: {', '.join(dict.fromkeys(reference['model']))})")
        found = 0
        for pub in (p for p in published if p["model"] == PUBLISHED + label):
            same = table[(table["model"] == measured) & (table["task"] == pub["task"]) &
                         (table["metric"] == pub["metric"])]
            for _, mine in same.iterrows():
                found += 1
                rows.append({"task": pub["task"], "model": f"Δ {measured} vs {PUBLISHED}{label}",
                             "metric": pub["metric"], **{g: mine.get(g, np.nan) - pub.get(g, np.nan) for g in groups},
                             "unit": mine["unit"], "higher_is_better": mine["higher_is_better"], ROW: "difference",
                             SOURCE: pub[SOURCE]})
        if not found:
            mine_keys = sorted({f"{t} {m}" for t, m in table.loc[table["model"] == measured, ["task", "metric"]]
                               .itertuples(index=False)})
            theirs = sorted({f"{t} {m}" for t, m in reference.loc[reference["model"] == label, ["task", "metric"]]
                             .itertuples(index=False)})
            raise ConfigError(f"--reference-model {measured}={label}: no task and metric in common (measured: "
                              f"{', '.join(mine_keys)}; published: {', '.join(theirs)})")
    return rows


def add_reference(table: pd.DataFrame, reference: pd.DataFrame,
                  pairs: list[tuple[str, str]] | None = None) -> pd.DataFrame:
    """The wide table with its matching published rows and the named differences, each task's measured rows first,
    then published, then differences; `row` says which a row is and `source` cites the paper."""
    shown = shown_rows(table, reference)
    published = _published_table(shown)
    groups = _value_columns(table)
    groups += [c for c in dict.fromkeys(shown["column"]) if c not in groups]
    differences = _differences(table, published, reference, pairs or [], groups)
    measured = table.assign(**{ROW: "measured", SOURCE: ""})
    merged = pd.concat([measured, pd.DataFrame(published), pd.DataFrame(differences)], ignore_index=True)
    tasks = list(dict.fromkeys(table["task"]))
    order = sorted(range(len(merged)), key=lambda i: (tasks.index(merged.at[i, "task"]),
                                                       ROW_ORDER.index(merged.at[i, ROW])))
    merged = merged.loc[order].reset_index(drop=True)
    columns = ["task", "model", "metric"]
    for group in groups:
        columns += [group, f"{group} ci_low", f"{group} ci_high"]
    columns += [c for c in ("n_errors",) if c in table.columns] + ["unit", "higher_is_better", ROW, SOURCE]
    return merged.reindex(columns=columns)
