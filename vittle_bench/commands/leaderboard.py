"""`vittle-bench leaderboard RUN_DIR...`: paper-style tables (with confidence intervals) from one or more runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EPILOG = """\
Columns are clean and the mean over the shift conditions of each group. ± (or the subscript) is half the width
of the 95% percentile bootstrap interval over samples, seeded by --seed; a column that averages several
conditions is resampled in pairs from samples.jsonl (one draw of sample ids serves every condition).
--layout long writes the tidy table: both interval ends, relative robustness (group / clean), clean->shift
flip rate (binary-scored tasks) and, with --group-by shift, the area under the severity curve."""


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
    board.add_argument("--output", help="write to this file instead of stdout")
    board.add_argument("--plots", type=Path, metavar="DIR",
                       help="also write severity curves and a clean-vs-shift scatter (PNG + PDF) here; needs [plots]")
    board.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from vittle_bench.config import ConfigError
    from vittle_bench.leaderboard import aggregate, load_results, load_samples, widen
    from vittle_bench.render import render

    if args.n_boot < 100:
        raise ConfigError("--n-boot must be at least 100")
    run_dirs = [Path(p) for p in args.run_dirs]
    results, samples = load_results(run_dirs), load_samples(run_dirs)
    long = aggregate(results, samples, args.metric, args.group_by, args.seed, args.n_boot)
    if long.empty:
        raise ConfigError(f"no task in these runs has the metric {args.metric!r}" if args.metric else "no results")
    write_text(render(long if args.layout == "long" else widen(long), args.format, args.ci), args.output)
    if args.plots:
        from vittle_bench import plots

        written = plots.leaderboard_plots(results, args.plots, args.metric, samples, args.seed)
        print(f"plots: {', '.join(str(p) for p in written)}", file=sys.stderr)
    return 0


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
