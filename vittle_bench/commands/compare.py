"""`vittle-bench compare RUN_A RUN_B`: is model B better than model A, cell by cell and per shift kind?
What is computed, and how, is `vittle_bench.comparison`'s docstring (the command's description)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from vittle_bench import comparison
from vittle_bench.comparison import compare_runs
from vittle_bench.config import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    cmp = sub.add_parser("compare", help="paired difference B - A per cell and per shift kind, with CIs and p-values",
                         description=(comparison.__doc__ or "").split("\n\n")[1])
    cmp.add_argument("run_a", help="run directory of the reference model (e.g. the baseline)")
    cmp.add_argument("run_b", help="run directory of the model compared with it (e.g. Vittle); may equal run_a")
    cmp.add_argument("--model-a", help="model of run_a to use when it holds several")
    cmp.add_argument("--model-b", help="model of run_b to use when it holds several")
    cmp.add_argument("--metric", help="metric (default: each task's headline metric, as results.csv marks it)")
    cmp.add_argument("--format", choices=("markdown", "csv"), default="markdown")
    cmp.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    cmp.add_argument("--n-boot", type=int, default=1000, help="bootstrap draws (default: 1000)")
    cmp.add_argument("--output", help="write to this file instead of stdout")
    cmp.add_argument("--plots", type=Path, metavar="DIR", help="also write a per-shift bar chart of B - A (PNG + PDF)")
    cmp.set_defaults(func=main)


def render_comparison(table: pd.DataFrame, fmt: str, confidence: float = 0.95) -> str:
    """CSV (all columns, full precision) or a Markdown table per task, with what the columns mean."""
    if fmt == "csv":
        return table.to_csv(index=False, float_format="%.6g")
    from tabulate import tabulate

    def num(v: object, spec: str) -> str:
        return "" if v is None or pd.isna(v) else format(v, spec)

    parts = []
    for task, t in table.groupby("task", sort=False):
        first = t.iloc[0]
        unit = " (pp)" if first["unit"] == "pp" else ""
        shown = [[r.condition, r.shift_kind, r.severity, r.n, num(r.a, ".1f"), num(r.b, ".1f"), num(r.diff, "+.1f"),
                  f"[{num(r.ci_low, '+.1f')}, {num(r.ci_high, '+.1f')}]", num(r.p_value, ".3g"), r.test]
                 for r in t.itertuples()]
        header = ["condition", "kind", "severity", "n", "A", "B", f"B − A{unit}", f"{confidence:.0%} CI", "p", "test"]
        parts.append(f"**{task}** — {first['metric']}; A = `{first['model_a']}`, B = `{first['model_b']}`\n\n"
                     + tabulate(shown, headers=header, tablefmt="github", disable_numparse=True))
    note = (f"n: samples scored in both runs. CI: {confidence:.0%} paired-bootstrap percentile interval (one draw of "
            "sample ids weights both models and, for kind means, every condition). p: two-sided; kind means use the "
            "paired bootstrap. pp: percentage points.")
    return "\n\n".join(parts) + "\n\n" + note


def main(args: argparse.Namespace) -> int:
    from vittle_bench.commands.leaderboard import write_text
    from vittle_bench.leaderboard import load_results, load_samples

    if args.n_boot < 100:
        raise ConfigError("--n-boot must be at least 100")
    run_a, run_b = Path(args.run_a), Path(args.run_b)
    table = compare_runs(load_results([run_a]), load_samples([run_a]), load_results([run_b]), load_samples([run_b]),
                         args.model_a, args.model_b, args.metric, args.seed, args.n_boot)
    write_text(render_comparison(table, args.format), args.output)
    if args.plots:
        from vittle_bench import plots

        written = plots.difference_bars(table, args.plots)
        print(f"plots: {', '.join(str(p) for p in written)}", file=sys.stderr)
    return 0
