"""`vittle-bench leaderboard RUN_DIR...`: wide tables from one or more runs."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    board = sub.add_parser("leaderboard", help="wide table from one or more run directories")
    board.add_argument("run_dirs", nargs="+")
    board.add_argument("--format", choices=("csv", "markdown", "latex"), default="markdown")
    board.add_argument("--metric", help="metric to show (default: each task's accuracy or relative score)")
    board.add_argument("--group-by", choices=("shift_kind", "shift"), default="shift_kind")
    board.add_argument("--output", help="write to this file instead of stdout")
    board.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from vittle_bench.leaderboard import load_results, render, wide_table

    text = render(wide_table(load_results([Path(p) for p in args.run_dirs]), args.metric, args.group_by), args.format)
    if args.output:
        Path(args.output).write_text(text if text.endswith("\n") else text + "\n")
    else:
        print(text)
    return 0
