"""`vittle-bench report`: a static site over one or more run directories that opens from disk.

Pages: `index.html` (leaderboard, robustness, severity curves, paired differences), one page per task (each
condition's metrics and a gallery of the samples that got worse or better under it, with their clean twins) and
`versus.html` (per pair of models, the samples one keeps and the other loses under the same shift, beside
`compare`'s per-cell tests). Everything the pages use is written next to them (no CDN, no server); every text
from a run or a dataset goes through the templates' autoescape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from itertools import combinations
from pathlib import Path
from typing import Any

import pandas as pd
from jinja2 import Environment, PackageLoader, StrictUndefined
from tqdm.auto import tqdm

from vittle_bench.comparison import compare_runs
from vittle_bench.leaderboard import aggregate, widen
from vittle_bench.plans import Plan, resolve_plan
from vittle_bench.reference import KIND_LAYOUT, ROW, add_reference, load_reference, parse_pairs
from vittle_bench.render import wide_cells
from vittle_bench.report import DEFAULT_EXAMPLES
from vittle_bench.report.cards import Card, CardMaker
from vittle_bench.report.charts import PALETTE, severity_charts
from vittle_bench.report.data import ReportData, load_report_data
from vittle_bench.report.outcomes import CellCounts, cell_counts, keeps_and_loses, paired_scores, pick_examples
from vittle_bench.report.thumbnails import DataSettings, Reproduced, ThumbnailWriter, reproduce

ASSETS = ("report.css", "report.js")


@dataclass(frozen=True)
class ReportSettings:
    output: Path
    data: DataSettings
    examples: int = DEFAULT_EXAMPLES  # gallery cards per (task, condition, model, direction)
    reference: str | None = None  # `--reference`: published rows beside the measured ones
    plan: str | None = None  # `--plan`: the leaderboard's columns (default: the runs' own plan, else shift kinds)
    reference_models: tuple[str, ...] = ()  # MEASURED=PUBLISHED pairs whose differences are shown
    seed: int = 0
    n_boot: int = 1000
    progress: bool = True


@dataclass(frozen=True)
class ReportSummary:
    index: Path
    pages: int
    cards: int
    cards_without_images: int
    mismatched_images: int
    problems: list[str]
    bytes: int


def task_page(task: str) -> str:
    return "task-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", task) + ".html"


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("vittle_bench", "templates/report"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["task_page"] = task_page
    env.filters["num"] = lambda v, d=1: "–" if v is None or v == "" or pd.isna(v) else f"{float(v):.{d}f}"
    env.filters["pvalue"] = lambda v: "–" if v is None or pd.isna(v) else f"{float(v):.3g}"
    return env


def _plan(data: ReportData, settings: ReportSettings) -> Plan | None:
    """The evaluation plan whose columns lay the leaderboard out: `--plan`, else the plan every run was made with
    (runs from different plans, or without one, get the shift-kind columns)."""
    if settings.plan:
        return resolve_plan(settings.plan, settings.data.include_paths)
    names = {(m.get("plan") or {}).get("plan") for m in data.manifests}
    if len(names) == 1 and (name := names.pop()):
        return resolve_plan(name, settings.data.include_paths)
    return None


def _leaderboard(data: ReportData, settings: ReportSettings) -> dict[str, Any]:
    plan = _plan(data, settings)
    long = aggregate(data.results, data.scoring, None, "shift_kind", settings.seed, settings.n_boot,
                     columns=plan.column_of if plan else None)
    table = widen(long, plan.column_order() if plan else None)
    if settings.reference:
        reference = load_reference(settings.reference, plan.name if plan else KIND_LAYOUT)
        table = add_reference(table, reference, parse_pairs(list(settings.reference_models)))
    header, body, note = wide_cells(table, "html")
    kinds = [row[ROW] if ROW in table.columns else "measured" for _, row in table.iterrows()]
    return {"header": header, "rows": list(zip(kinds, body)), "note": note, **_robustness(long)}


def _robustness(long: pd.DataFrame) -> dict[str, Any]:
    """Relative robustness and flip rate per task and model (rows) and shift kind (columns)."""
    shifted = long[long["group"] != "clean"]
    groups = list(dict.fromkeys(shifted["group"]))
    rows = []
    for (task, model, metric), g in shifted.groupby(["task", "model", "metric"], sort=False):
        by_group = g.set_index("group")
        rows.append({"task": task, "model": model, "metric": metric,
                     "cells": [(by_group["relative_robustness"].get(k), by_group["flip_rate"].get(k)) for k in groups]})
    return {"robustness_groups": groups, "robustness": rows}


def _shift_of(data: ReportData) -> dict[str, str]:
    return dict(zip(data.results["condition"], data.results["shift"]))


def _condition_rows(data: ReportData, settings: ReportSettings,
                    counts: dict[tuple[str, str, str], CellCounts]) -> list[dict[str, Any]]:
    """Per task, condition and model: the headline value with its interval, relative robustness, flip rate
    and the counts of samples worse, better and unscored against their clean twins."""
    long = aggregate(data.results, data.scoring, None, "condition", settings.seed, settings.n_boot)
    severity = dict(zip(data.results["condition"], data.results["severity"].astype(int)))
    shift_of = _shift_of(data)
    rows = []
    for r in long.to_dict("records"):
        condition = str(r["group"])
        count = counts.get((str(r["task"]), condition, str(r["model"])))
        rows.append({**r, "condition": condition, "shift": shift_of.get(condition, condition),
                     "severity": severity.get(condition, 0),
                     "worse": count.worse if count else "", "better": count.better if count else "",
                     "unscored": count.unscored if count else ""})
    return rows


def _filter_values(rows: list[dict[str, Any]], cards: list[Card]) -> dict[str, list[str]]:
    """The values each filter offers: the shifts and severities of the shifted conditions, the categories."""
    shifted = [r for r in rows if r["shift_kind"] != "clean"]
    return {"shift": list(dict.fromkeys(str(r["shift"]) for r in shifted)),
            "severity": sorted({str(r["severity"]) for r in shifted}, key=int),
            "category": sorted({c.category for c in cards if c.category})}


def _comparisons(data: ReportData, settings: ReportSettings) -> list[tuple[str, str, pd.DataFrame]]:
    """`compare`'s rows for every pair of models (A before B in report order)."""
    out = []
    for model_a, model_b in combinations(data.models, 2):
        table = compare_runs(data.results, data.scoring, data.results, data.scoring, model_a, model_b,
                             seed=settings.seed, n_boot=settings.n_boot)
        out.append((model_a, model_b, table))
    return out


def _first_run(data: ReportData) -> dict[tuple[str, str, str], int]:
    """(task, condition, sample) -> the run whose record a card's images come from (its first model's)."""
    order = {m: i for i, m in enumerate(data.models)}
    ranked = data.records.assign(rank=data.records["model"].map(order)).sort_values("rank", kind="stable")
    first = ranked.drop_duplicates(["task", "condition", "sample_id"])
    keys = zip(first["task"], first["condition"], first["sample_id"], first["run"])
    return {(t, c, s): int(r) for t, c, s, r in keys}


def _images(data: ReportData, keys: set[tuple[str, str, str]], settings: ReportSettings) -> Reproduced:
    run_of = _first_run(data)
    wanted: dict[int, dict[str, dict[str, set[str]]]] = {}
    for task, condition, sample in keys:
        by_task = wanted.setdefault(run_of[task, condition, sample], {}).setdefault(task, {})
        by_task.setdefault(condition, set()).add(sample)
        by_task.setdefault("clean", set()).add(sample)
    expected = {(int(r), t, c, s): h for r, t, c, s, h in data.records[["run", "task", "condition", "sample_id",
                                                                        "input_hash"]].itertuples(index=False)}
    found, writer = Reproduced(), ThumbnailWriter(settings.output)
    for run, tasks in tqdm(sorted(wanted.items()), desc="report images", unit="run", disable=not settings.progress):
        reproduce(run, data.run_dirs[run], data.manifests[run], tasks, expected, settings.data, writer, found)
    return found


def build_report(run_dirs: list[Path], settings: ReportSettings) -> ReportSummary:
    """Write the site under `settings.output` and say what it holds."""
    data = load_report_data(run_dirs)
    settings.output.mkdir(parents=True, exist_ok=True)
    pairs = paired_scores(data.records)
    picks = pick_examples(pairs, settings.examples)
    comparisons = _comparisons(data, settings)
    versus = [(a, b, table, keeps_and_loses(pairs, a, b, settings.examples)) for a, b, table in comparisons]
    picked = set(zip(picks["task"], picks["condition"], picks["sample_id"]))
    keys = set(picked)
    for *_, chosen in versus:
        keys |= set(zip(chosen["task"], chosen["condition"], chosen["sample_id"]))
    images = _images(data, keys, settings)
    maker = CardMaker(data.records, data.models, data.binary_tasks, images)
    cards = {key: maker.card(*key) for key in sorted(keys)}
    colours = {m: PALETTE[i % len(PALETTE)] for i, m in enumerate(data.models)}
    env = _environment()
    common = {"models": data.models, "colours": colours, "tasks": list(data.headline), "runs": _runs(data),
              "binary_tasks": data.binary_tasks, "headline": data.headline}
    pages = {"index.html": env.get_template("overview.html.j2").render(
        **common, leaderboard=_leaderboard(data, settings),
        charts=severity_charts(data.results[data.results["primary"]], colours), comparisons=comparisons,
        problems=images.problems)}
    rows = _condition_rows(data, settings, cell_counts(pairs))
    for task in data.headline:
        task_cards = _ordered([c for k, c in cards.items() if k[0] == task and k in picked], data)
        task_rows = [r for r in rows if r["task"] == task]
        pages[task_page(task)] = env.get_template("task.html.j2").render(
            **common, task=task, metric=data.headline[task], cards=task_cards, rows=task_rows,
            examples=settings.examples, filters=_filter_values(task_rows, task_cards))
    versus_cards = [(a, b, table[table["scope"] == "cell"].to_dict("records"),
                     [_with_loser(cards[(t, c, s)], loser) for t, c, s, loser in chosen.itertuples(index=False)])
                    for a, b, table, chosen in versus]
    pages["versus.html"] = env.get_template("versus.html.j2").render(
        **common, pairs=versus_cards, shift_of=_shift_of(data),
        filters=_filter_values(rows, [c for *_, cs in versus_cards for c in cs]))
    for name, html in pages.items():
        (settings.output / name).write_text(html, encoding="utf-8")
    _copy_assets(settings.output)
    size = sum(p.stat().st_size for p in settings.output.rglob("*") if p.is_file())
    return ReportSummary(settings.output / "index.html", len(pages), len(cards),
                         sum(not (c.clean_images or c.shifted_images) for c in cards.values()), images.mismatched,
                         images.problems, size)


def _with_loser(card: Card, loser: str) -> Card:
    return Card(**{**card.__dict__, "loser": loser})


def _ordered(cards: list[Card], data: ReportData) -> list[Card]:
    order = {c: i for i, c in enumerate(dict.fromkeys(data.results["condition"]))}
    return sorted(cards, key=lambda c: (order.get(c.condition, len(order)), c.sample_id))


def _runs(data: ReportData) -> list[dict[str, Any]]:
    return [{"path": str(path), "finished": m.get("finished", ""), "seed": m.get("seed"),
             "command": m.get("command_line", "")} for path, m in zip(data.run_dirs, data.manifests)]


def _copy_assets(output: Path) -> None:
    folder = output / "assets"
    folder.mkdir(exist_ok=True)
    source = resources.files("vittle_bench") / "templates" / "report"
    for name in ASSETS:
        (folder / name).write_bytes((source / name).read_bytes())
