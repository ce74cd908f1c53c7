"""`vittle-bench leaderboard RUN_DIR...`: paper-style tables (with confidence intervals) from one or more runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

EPILOG = """\
Columns are clean and the mean over the shift conditions of each group. ± (or the subscript) is half the width
of the 95% percentile bootstrap interval over samples, seeded by --seed; a column that averages several
conditions is resampled in pairs from samples.jsonl (one draw of sample ids serves every condition).
--layout long writes the tidy table: both interval ends, relative robustness (group / clean), clean->shift
flip rate (binary-scored tasks) and, with --group-by shift, the area under the severity curve.
--reference paper adds the numbers the Vittle paper publishes (leaderboards/paper/) as rows labelled
published:MODEL, without intervals and never bold, in the layout they were published in (the paper's
LLaVA-Bench-COCO averages with --plan paper45, EMID in the default layout); --reference-model
MEASURED=PUBLISHED adds a row "Δ MEASURED vs published:PUBLISHED" (measured − published) where task, metric and
column are the same."""


def register(sub: argparse._SubParsersAction) -> None:
    board = sub.add_parser("leaderboard", help="paper-style table from one or more run directories",
                           epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    board.add_argument("run_dirs", nargs="+", help="run directories (merged; later ones win on duplicates)")
    board.add_argument("--format", choices=("csv", "markdown", "latex", "html"), default="markdown")
    board.add_argument("--layout", choices=("wide", "long"), default="wide",
                       help="wide: one row per task x model (default); long: one row per task x model x column")
    board.add_argument("--metric", help="metric to show (default: each task's headline metric, as results.csv "
                       "marks it; a base name such as emi matches its qualified forms)")
    board.add_argument("--group-by", choices=("shift_kind", "shift", "severity", "condition"), default="shift_kind",
                       help="columns: shift kinds (default), shift families, severity levels, or every condition")
    board.add_argument("--ci", choices=("pm", "subscript", "none"), default="pm",
                       help="how LaTeX/Markdown/HTML show the interval (default: pm)")
    board.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    board.add_argument("--n-boot", type=int, default=1000, help="bootstrap draws (default: 1000)")
    board.add_argument("--reference", metavar="paper|CSV",
                       help="add published reference rows: `paper` (leaderboards/paper/), a reference CSV or a "
                       "folder of them; wide layout, --group-by shift_kind")
    board.add_argument("--reference-model", action="append", metavar="MEASURED=PUBLISHED",
                       help="show measured − published for this pair of models (repeatable; needs --reference)")
    board.add_argument("--plan", metavar="NAME|FILE",
                       help="group columns as the evaluation plan's `columns` declare (e.g. paper45: the paper's "
                       "clean / visual / text / joint / long-tail for LLaVA-Bench, clean / shifted for POPE)")
    board.add_argument("--include-path", action="append", default=[], help="extra directory of plan YAML files")
    board.add_argument("--output", help="write to this file instead of stdout")
    board.add_argument("--plots", type=Path, metavar="DIR",
                       help="also write severity curves and a clean-vs-shift scatter (PNG + PDF) here; needs [plots]")
    board.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from vittle_bench.config import ConfigError
    from vittle_bench.leaderboard import aggregate, load_results, load_samples, widen
    from vittle_bench.plans import resolve_plan
    from vittle_bench.reference import parse_pairs
    from vittle_bench.render import render

    if args.n_boot < 100:
        raise ConfigError("--n-boot must be at least 100")
    pairs = parse_pairs(args.reference_model)
    if args.reference is None and pairs:
        raise ConfigError("--reference-model needs --reference (e.g. --reference paper)")
    if args.reference is not None and (args.layout == "long" or args.group_by != "shift_kind"):
        raise ConfigError("--reference adds rows to the wide table grouped by shift kind (the paper's columns): "
                          "drop --layout long and --group-by")
    plan = None
    if args.plan is not None:
        if args.group_by != "shift_kind":
            raise ConfigError("--plan sets the columns: drop --group-by")
        plan = resolve_plan(args.plan, [Path(p) for p in args.include_path])
    run_dirs = [Path(p) for p in args.run_dirs]
    results, samples = load_results(run_dirs), load_samples(run_dirs)
    long = aggregate(results, samples, args.metric, args.group_by, args.seed, args.n_boot,
                     columns=plan.column_of if plan else None)
    if long.empty:
        raise ConfigError(f"no task in these runs has the metric {args.metric!r}" if args.metric else "no results")
    table = long if args.layout == "long" else widen(long, plan.column_order() if plan else None)
    if args.reference is not None:
        table = with_reference(table, args.reference, pairs, plan.name if plan else "shift_kind")
    write_text(render(table, args.format, args.ci), args.output)
    if args.plots:
        from vittle_bench import plots

        written = plots.leaderboard_plots(results, args.plots, args.metric, samples, args.seed)
        print(f"plots: {', '.join(str(p) for p in written)}", file=sys.stderr)
    return 0


def with_reference(table: pd.DataFrame, spec: str, pairs: list[tuple[str, str]], layout: str) -> pd.DataFrame:
    """The wide table with the published rows `spec` names for its layout; a reference that matches nothing on
    the table is said on stderr (the table is still written)."""
    from vittle_bench.reference import ROW, add_reference, load_reference

    reference = load_reference(spec, layout)
    table = add_reference(table, reference, pairs)
    if not (table[ROW] == "published").any():
        held = sorted({f"{task} {metric}" for task, metric in zip(reference["task"], reference["metric"])})
        print(f"--reference {spec}: no published row is for a task and metric of these runs (it holds "
              f"{', '.join(held)})", file=sys.stderr)
    return table


def write_text(text: str, output: str | None) -> None:
    """Print, or write to `output` (a missing or unwritable folder is a one-line usage error)."""
    from vittle_bench.config import ConfigError

    if not output:
        print(text)
        return
    try:
        Path(output).write_text(text if text.endswith("\n") else text + "\n")
    except OSError as exc:
        raise ConfigError(f"cannot write {output} ({exc.strerror})") from None
    print(f"wrote {output}", file=sys.stderr)
