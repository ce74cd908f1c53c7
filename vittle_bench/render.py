"""Leaderboard tables as text: Markdown, LaTeX (booktabs), a self-contained HTML page, CSV. Wide tables get
intervals, the best value per task and column in bold (by the metric's declared direction) and error counts;
numbers are shown as results.csv holds them, with as many decimals as the metric's magnitude needs."""

from __future__ import annotations

from functools import cache
from html import escape

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup
from tabulate import tabulate

from vittle_bench.errors import ConfigError
from vittle_bench.leaderboard import KIND_ORDER
from vittle_bench.metrics import stats
from vittle_bench.metrics.base import PERCENT
from vittle_bench.reference import PUBLISHED, ROW

FORMATS = ("csv", "markdown", "latex", "html")
CI_STYLES = ("pm", "subscript", "none")


def value_columns(table: pd.DataFrame) -> list[str]:
    """The value columns of a wide table (those with interval columns next to them)."""
    return [c for c in table.columns if f"{c} ci_low" in table.columns]


def _note(ci: str, confidence: float) -> str:
    interval = "" if ci == "none" else (
        f"± is half the width of the {confidence:.0%} percentile bootstrap interval over samples (seeded); a column "
        "averaging several shift conditions is resampled in pairs (one draw of sample ids serves every condition). ")
    return ("Rates (accuracy, F1, ...) in percent, as in results.csv; relative scores 100 x model / reference. " +
            interval + "Bold: best model per task and column. n_errors: samples that failed and were not scored.")


def _reference_note(table: pd.DataFrame) -> str:
    """What the published and difference rows of a table with reference rows are, and where each comes from."""
    published = table[table[ROW] == "published"]
    if published.empty:
        return ""
    sources = "; ".join(f"{source} ({', '.join(dict.fromkeys(rows['model']))})"
                        for source, rows in published.groupby("source", sort=False))
    note = (f" {PUBLISHED}… rows are numbers the cited papers publish, not measured here: no intervals, never bold "
            f"(bold compares measured rows only). Sources: {sources}.")
    if (table[ROW] == "difference").any():
        note += (f" Δ A vs {PUBLISHED}B rows: measured A − published B, where task, metric and column are the same "
                 "(pairs named by --reference-model).")
    return note


def _measured(table: pd.DataFrame) -> pd.DataFrame:
    return table[table[ROW] == "measured"] if ROW in table.columns else table


def _best(table: pd.DataFrame, columns: list[str], decimals: dict[tuple[str, str], int]) -> set[tuple[int, str]]:
    """(row, column) cells holding the best value of their task and metric as shown (`decimals` per task and
    metric), by the metric's declared direction (ties included; only where models differ; none for a metric
    without a better direction). Measured rows only: published and difference rows are never bold."""
    best: set[tuple[int, str]] = set()
    for key, rows in _measured(table).groupby(["task", "metric"], sort=False):
        higher = rows["higher_is_better"].iloc[0]
        if higher is None or pd.isna(higher):
            continue
        for column in columns:
            shown = rows[column].round(decimals[key]).dropna()
            if shown.nunique() < 2:
                continue
            target = shown.max() if higher else shown.min()
            best |= {(i, column) for i in shown.index[shown == target]}
    return best


def _latex_escape(text: str) -> str:
    specials = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "Δ": r"$\Delta$",
                "…": r"\ldots{}"}
    return "".join(specials.get(ch, ch) for ch in str(text))


def _decimals(values: pd.DataFrame) -> int:
    """Decimals that show a metric's values with about three significant digits at its largest magnitude:
    one for percentages and relative scores (94.7), three for EMI in nats (0.012), never more than four."""
    largest = float(np.nanmax(np.abs(values.to_numpy(dtype=float)))) if values.notna().any().any() else 0.0
    return 1 if largest == 0 else int(np.clip(2 - np.floor(np.log10(largest)), 1, 4))


def _cell(value: float, low: float, high: float, bold: bool, fmt: str, ci: str, decimals: int = 1,
          signed: bool = False) -> tuple[str, str]:
    """(shown text, sort value) of one table cell; `signed` (a difference) always shows its sign."""
    if pd.isna(value):
        return ("--" if fmt == "latex" else "—"), ""
    number = f"{value:{'+' if signed else ''}.{decimals}f}"
    if signed and fmt == "latex":
        number = f"${number}$"
    if bold:
        number = {"latex": rf"\textbf{{{number}}}", "markdown": f"**{number}**", "html": f"<b>{number}</b>"}[fmt]
    if ci != "none" and pd.notna(low) and pd.notna(high):
        half = f"{(high - low) / 2:.{decimals}f}"
        number += {("latex", "pm"): rf" $\pm$ {half}", ("latex", "subscript"): rf"$_{{\pm {half}}}$",
                   ("markdown", "pm"): f" ± {half}", ("markdown", "subscript"): f"<sub>±{half}</sub>",
                   ("html", "pm"): f" ± {half}", ("html", "subscript"): f"<sub>±{half}</sub>"}[(fmt, ci)]
    return number, f"{value:.6g}"


def render(table: pd.DataFrame, fmt: str, ci: str = "pm", confidence: float = stats.CONFIDENCE) -> str:
    """Text of a table. Wide tables (`widen`) get intervals, bold best values and error counts; others (the long
    form) are written as they are."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if ci not in CI_STYLES:
        raise ConfigError(f"unknown CI style {ci!r}; choose from {', '.join(CI_STYLES)}")
    if fmt == "csv":
        return table.to_csv(index=False, float_format="%.6g")
    columns = value_columns(table)
    if not columns:
        return _render_plain(table, fmt)
    header, body, note = wide_cells(table, fmt, ci, confidence)
    if fmt == "markdown":
        return _markdown(header, [[text for text, _ in line] for line in body]) + "\n\n" + note
    if fmt == "html":
        return _html(header, body, note)
    return _latex(table, columns, "n_errors" in table.columns, body, note)


def wide_cells(table: pd.DataFrame, fmt: str, ci: str = "pm", confidence: float = stats.CONFIDENCE
               ) -> tuple[list[str], list[list[tuple[str, str | None]]], str]:
    """A wide table's header, its rows as (text in `fmt`, escaped for html, numeric sort key or None for a text
    cell) and the note saying what the numbers are (the web report shows the same cells)."""
    columns = value_columns(table)
    decimals = {key: _decimals(rows[columns]) for key, rows in table.groupby(["task", "metric"], sort=False)}
    best = _best(table, columns, decimals)
    errors = "n_errors" in table.columns
    header = ["task", "model", "metric", *columns, *(["n_errors"] if errors else [])]
    body: list[list[tuple[str, str | None]]] = []
    for i, row in table.iterrows():
        line: list[tuple[str, str | None]] = [(_text(row["task"], fmt), None), (_text(row["model"], fmt), None),
                                              (_text(row["metric"], fmt), None)]
        shown = decimals[row["task"], row["metric"]]
        signed = ROW in table.columns and row[ROW] == "difference"
        line += [_cell(row[c], row[f"{c} ci_low"], row[f"{c} ci_high"], (i, c) in best, fmt, ci, shown, signed)
                 for c in columns]
        if errors:
            count = 0 if pd.isna(row["n_errors"]) else int(row["n_errors"])
            line.append((str(count) if count else "", str(count)))
        body.append(line)
    note = _note(ci, confidence)
    measured = _measured(table)
    if ci != "none" and any((measured[c].notna() & measured[f"{c} ci_low"].isna()).any() for c in columns):
        note += (" A value without an interval averages several conditions of a metric that is not a ratio of "
                 "per-sample sums (EMI), or comes from a run without samples.jsonl.")
    if ROW in table.columns:
        note += _reference_note(table)
    return header, body, note


def _markdown(header: list[str], rows: list[list[str]]) -> str:
    align = ["left"] * 3 + ["right"] * (len(header) - 3)
    return tabulate(rows, headers=header, tablefmt="github", colalign=align, disable_numparse=True)


def _text(value: object, fmt: str) -> str:
    return escape(str(value)) if fmt == "html" else str(value)


def _latex(table: pd.DataFrame, columns: list[str], errors: bool, body: list[list[tuple[str, str | None]]],
           note: str) -> str:
    titles = [g.capitalize() if g in (*KIND_ORDER, "shifted") else _latex_escape(g) for g in columns]
    lines = [f"% {note}", r"\begin{tabular}{ll" + "r" * (len(columns) + errors) + "}", r"\toprule",
             " & ".join(["Task", "Model", *titles, *(["Errors"] if errors else [])]) + r" \\", r"\midrule"]
    previous = None
    for (_, row), line in zip(table.iterrows(), body):
        task = ""
        if row["task"] != previous:
            if previous is not None:
                lines.append(r"\midrule")
            unit = ", \\%" if row["unit"] == PERCENT else ""
            task = f"{_latex_escape(row['task'])} ({_latex_escape(row['metric'])}{unit})"
            previous = row["task"]
        cells = [task, _latex_escape(row["model"]), *[text for text, _ in line[3:]]]
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines)


@cache
def _templates() -> Environment:
    """The package's page templates (package data under vittle_bench/templates). Autoescape is on, but plain text
    goes through the html_escape filter (html.escape: quotes as &quot; and &#x27;, where autoescape writes &#34;
    and &#39;) and cell html, escaped by the caller, is marked safe in the template."""
    environment = Environment(loader=PackageLoader("vittle_bench", "templates"), autoescape=True,
                              undefined=StrictUndefined)
    environment.filters["html_escape"] = lambda value: Markup(escape(str(value)))
    return environment


def _html(header: list[str], body: list[list[tuple[str, str | None]]], note: str) -> str:
    """A self-contained page (inline style and script, nothing fetched); click a header to sort by it.
    Cells are (html text, numeric sort key or None for a text cell); text is escaped by the caller."""
    return _templates().get_template("leaderboard.html.j2").render(header=header, body=body, note=note)


def _render_plain(table: pd.DataFrame, fmt: str, note: str = "") -> str:
    """Tables without interval columns (the long form, `compare`): written cell by cell, numbers rounded."""
    if fmt == "html":
        body: list[list[tuple[str, str | None]]] = [[(escape(str(v)), None) if isinstance(v, str) else
                 ("" if pd.isna(v) else f"{v:.4g}", "" if pd.isna(v) else f"{v:.6g}") for v in row]
                for row in table.itertuples(index=False)]
        return _html([str(c) for c in table.columns], body, note)
    text = tabulate(table, headers="keys", tablefmt="github" if fmt == "markdown" else "latex_booktabs",
                    showindex=False, floatfmt=".4g", missingval="")
    return text + (f"\n\n{note}" if note and fmt == "markdown" else f"\n% {note}" if note else "")
