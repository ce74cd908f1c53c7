"""Command-line front: run, list, leaderboard, train-builtin.

Configuration mistakes (unknown names, bad YAML, unwritable output) print one line and exit with code 2.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from vittle_bench.config import DEFAULT_SHIFTS, DEFAULT_TASKS, ConfigError
from vittle_bench.registry import UnknownNameError

USAGE_ERROR = 2


def _run(args: argparse.Namespace) -> int:
    from vittle_bench.leaderboard import render, wide_table, load_results
    from vittle_bench.models import parse_model_args
    from vittle_bench.runner import RunOptions, default_cache_dir, run

    models = [m.strip() for m in args.model.split(",") if m.strip()]
    output = args.output or Path("vittle-runs") / "_".join(m.replace(":", "-").replace("/", "-") for m in models)
    options = RunOptions(
        models=models, output=output, tasks=args.tasks, shifts=args.shifts, limit=args.limit,
        batch_size=args.batch_size, seed=args.seed, model_args=parse_model_args(args.model_args),
        include_paths=[Path(p) for p in args.include_path], cache_dir=args.cache_dir or default_cache_dir(),
        use_cache=not args.no_cache, command_line=shlex.join(["vittle-bench", *sys.argv[1:]]))
    summary = run(options)
    print(render(wide_table(load_results([summary.output])), "markdown"))
    errors = f", {summary.n_errors} errors (see samples.jsonl)" if summary.n_errors else ", no errors"
    print(f"\n{summary.n_records} samples ({summary.n_generated} generated, {summary.n_cached} cached){errors} "
          f"in {summary.seconds:.0f}s -> {summary.output}/")
    return 0


def _list(args: argparse.Namespace) -> int:
    from vittle_bench.config import load_suites, load_task_specs
    from vittle_bench.models.builtin import BUILTIN_MODELS
    from vittle_bench.models.base import MODELS
    from vittle_bench.shifts import SHIFTS

    include = [Path(p) for p in args.include_path]
    if args.what == "models":
        print("\n".join([f"builtin:{m}" for m in BUILTIN_MODELS] + [f"{s}:<id-or-path>" for s in MODELS.names() if s != "builtin"]))
    elif args.what == "tasks":
        for spec in load_task_specs(include).values():
            print(f"{spec.task:28s} {spec.adapter:12s} {spec.source:22s} {spec.description}")
    else:
        for name, suite in load_suites(include).items():
            print(f"suite {name:22s} {len(suite['conditions'])} conditions")
        for name in SHIFTS.names():
            shift = SHIFTS.get(name)(1)
            print(f"{name:28s} {shift.kind:6s} severities 1-5")
    return 0


def _leaderboard(args: argparse.Namespace) -> int:
    from vittle_bench.leaderboard import load_results, render, wide_table

    text = render(wide_table(load_results([Path(p) for p in args.run_dirs]), args.metric, args.group_by), args.format)
    if args.output:
        Path(args.output).write_text(text if text.endswith("\n") else text + "\n")
    else:
        print(text)
    return 0


def _train_builtin(args: argparse.Namespace) -> int:
    import os

    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # must precede torch's import; see OFFLINE.md
    from vittle_bench.models.builtin import weights_dir
    from vittle_bench.models.builtin_training import VARIANTS, train_builtin
    from vittle_bench.models.tiny_llava_train import Recipe

    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        raise ConfigError(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    output = Path(args.output) if args.output else weights_dir("x").parent
    train_builtin(output, args.variants.split(","), Recipe(seed=args.seed))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vittle-bench", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="evaluate models on tasks x shifts")
    run.add_argument("--model", required=True, help="comma-separated: builtin:tiny-llava, hf:ORG/NAME or hf:PATH")
    run.add_argument("--model-args", default="", help="key=value,... passed to the model loader (e.g. dtype=bfloat16)")
    run.add_argument("--tasks", default=DEFAULT_TASKS, help=f"task names or groups (default: {DEFAULT_TASKS})")
    run.add_argument("--shifts", default=DEFAULT_SHIFTS, help=f"suites or conditions like frost@3, frost@3+keyboard@2 (default: {DEFAULT_SHIFTS})")
    run.add_argument("--limit", type=int, help="first N samples of each task")
    run.add_argument("--batch-size", type=int, default=32)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--output", type=Path, help="run directory (default: vittle-runs/<model>)")
    run.add_argument("--cache-dir", type=Path, help="answers, built-in data (default: ~/.cache/vittle-bench)")
    run.add_argument("--no-cache", action="store_true", help="neither read nor write the answer cache")
    run.add_argument("--include-path", action="append", default=[], help="extra directory of task/suite YAML files")
    run.set_defaults(func=_run)

    lst = sub.add_parser("list", help="list models, tasks or shifts")
    lst.add_argument("what", choices=("models", "tasks", "shifts"))
    lst.add_argument("--include-path", action="append", default=[])
    lst.set_defaults(func=_list)

    board = sub.add_parser("leaderboard", help="wide table from one or more run directories")
    board.add_argument("run_dirs", nargs="+")
    board.add_argument("--format", choices=("csv", "markdown", "latex"), default="markdown")
    board.add_argument("--metric", help="metric to show (default: each task's accuracy or relative score)")
    board.add_argument("--group-by", choices=("shift_kind", "shift"), default="shift_kind")
    board.add_argument("--output", help="write to this file instead of stdout")
    board.set_defaults(func=_leaderboard)

    train = sub.add_parser("train-builtin", help="reproduce the built-in models' committed weights (~40 min on 2 CPUs)")
    train.add_argument("--variants", default="tiny-llava,tiny-llava-vittle-f,tiny-llava-vittle-l")
    train.add_argument("--output", help="directory for the checkpoints (default: the package's weights directory)")
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(func=_train_builtin)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, UnknownNameError) as exc:
        print(f"vittle-bench: error: {exc}", file=sys.stderr)
        return USAGE_ERROR
