"""results.csv (long form) -> paper-style wide tables in CSV, LaTeX (booktabs) and Markdown.

Rows are (task, model); columns are clean and the mean over every shift condition of each kind, like the
paper's Table 1. Rates (accuracy, F1, ...) are shown in percent; relative scores are already 0-100.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from tabulate import tabulate

PRIMARY_METRICS = ("accuracy", "relative_score", "relative_score_overlap")
PERCENT_METRICS = {"accuracy", "precision", "recall", "f1", "yes_ratio", "unparseable_rate"}
KIND_ORDER = ("clean", "image", "text", "joint", "domain")
FORMATS = ("csv", "markdown", "latex")


def load_results(run_dirs: list[Path]) -> pd.DataFrame:
    frames = []
    for run_dir in run_dirs:
        path = run_dir / "results.csv" if run_dir.is_dir() else run_dir
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: pass run directories written by `vittle-bench run`")
        frames.append(pd.read_csv(path))
    results = pd.concat(frames, ignore_index=True)
    return results.drop_duplicates(subset=["model", "task", "shift", "severity", "metric"], keep="last")


def _primary(metrics: set[str]) -> str | None:
    return next((m for m in PRIMARY_METRICS if m in metrics), None)


def wide_table(results: pd.DataFrame, metric: str | None = None, group_by: str = "shift_kind") -> pd.DataFrame:
    """One row per (task, model). `metric=None` takes each task's primary metric (accuracy or relative score)."""
    rows = []
    for task, task_rows in results.groupby("task", sort=True):
        chosen = metric or _primary(set(task_rows["metric"]))
        if chosen is None or chosen not in set(task_rows["metric"]):
            continue
        values = task_rows[task_rows["metric"] == chosen].copy()
        if chosen in PERCENT_METRICS:
            values["value"] *= 100
        if group_by == "shift_kind":
            values["column"] = values["shift_kind"]
        else:
            values["column"] = values.apply(lambda r: "clean" if r["shift"] == "clean" else f"{r['shift']}@{r['severity']}", axis=1)
        table = values.pivot_table(index="model", columns="column", values="value", aggfunc="mean", sort=False)
        table.insert(0, "metric", chosen)
        table.insert(0, "task", task)
        rows.append(table.reset_index())
    if not rows:
        return pd.DataFrame(columns=["task", "model", "metric"])
    wide = pd.concat(rows, ignore_index=True)
    value_columns = [c for c in wide.columns if c not in ("task", "model", "metric")]
    ordered = sorted(value_columns, key=lambda c: (KIND_ORDER.index(c) if c in KIND_ORDER else len(KIND_ORDER), str(c)))
    return wide[["task", "model", "metric", *ordered]]


def render(table: pd.DataFrame, fmt: str) -> str:
    if fmt == "csv":
        return table.to_csv(index=False, float_format="%.2f")
    if fmt == "markdown":
        return tabulate(table, headers="keys", tablefmt="github", showindex=False, floatfmt=".1f")
    if fmt == "latex":
        return tabulate(table, headers="keys", tablefmt="latex_booktabs", showindex=False, floatfmt=".1f")
    raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
