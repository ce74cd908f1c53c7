"""`vittle-bench report RUN_DIR...`: a static web report of one or more runs that opens from disk."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from vittle_bench.errors import ConfigError
from vittle_bench.report import DEFAULT_EXAMPLES


def register(sub: argparse._SubParsersAction) -> None:
    rep = sub.add_parser("report", help="a static web report: leaderboard, severity curves, and the samples that "
                                        "broke under each shift beside their clean twins",
                         description="Writes a self-contained site (no server, no network) and prints the path of "
                                     "its index.html. See docs/report.md.")
    rep.add_argument("run_dirs", nargs="+", help="run directories written by `vittle-bench run`")
    rep.add_argument("--output", type=Path, help="site directory (default: RUN_DIR/report of the first run)")
    rep.add_argument("--examples", type=int, default=DEFAULT_EXAMPLES,
                     help=f"gallery cards per task, condition, model and direction (default: {DEFAULT_EXAMPLES})")
    rep.add_argument("--reference", help="published rows beside the measured ones, e.g. `paper` (leaderboards/paper)")
    rep.add_argument("--reference-model", action="append", default=[], metavar="MEASURED=PUBLISHED",
                     help="show measured − published for this pair (repeatable)")
    rep.add_argument("--plan", help="lay the leaderboard out in this evaluation plan's columns (default: the plan the "
                                    "runs were made with, if any; else clean / image / text / joint / domain)")
    rep.add_argument("--data-dir", type=Path, help="offline hub mirrors (default: each run's own --data-dir)")
    rep.add_argument("--include-path", action="append", default=[], help="task and suite files of the runs")
    rep.add_argument("--cache-dir", type=Path, default=None, help="cache directory (shifted images, built-in data)")
    rep.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    rep.add_argument("--n-boot", type=int, default=1000, help="bootstrap draws (default: 1000)")
    rep.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    # Imported here, as every command does with its heavy modules, so that `vittle-bench --help` stays quick.
    from vittle_bench.report.site import ReportSettings, build_report
    from vittle_bench.report.thumbnails import DataSettings
    from vittle_bench.run_plan import default_cache_dir

    if args.examples < 1:
        raise ConfigError("--examples must be at least 1")
    if args.n_boot < 100:
        raise ConfigError("--n-boot must be at least 100")
    if args.reference is None and args.reference_model:
        raise ConfigError("--reference-model needs --reference (e.g. --reference paper)")
    run_dirs = [Path(p) for p in args.run_dirs]
    for run_dir in run_dirs:
        if not run_dir.is_dir():
            raise ConfigError(f"{run_dir} is not a directory: pass run directories written by `vittle-bench run`")
    output = args.output or run_dirs[0] / "report"
    data = DataSettings(args.cache_dir or default_cache_dir(), args.data_dir, [Path(p) for p in args.include_path])
    settings = ReportSettings(output, data, examples=args.examples, reference=args.reference,
                              reference_models=tuple(args.reference_model), plan=args.plan, seed=args.seed,
                              n_boot=args.n_boot, progress=sys.stderr.isatty())
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot write {output} ({exc.strerror})") from None
    summary = build_report(run_dirs, settings)
    for line in summary.problems:
        print(f"warning: {line}", file=sys.stderr)
    if summary.mismatched_images:
        print(f"warning: {summary.mismatched_images} shifted inputs made again differ from what the model saw "
              "(marked on their cards)", file=sys.stderr)
    print(f"{summary.pages} pages, {summary.cards} sample cards ({summary.cards_without_images} without images), "
          f"{summary.bytes / 1e6:.1f} MB", file=sys.stderr)
    print(summary.index.resolve())
    return 0
