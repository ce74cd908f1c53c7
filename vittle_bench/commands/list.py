"""`vittle-bench list models|tasks|shifts`."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    lst = sub.add_parser("list", help="list models, tasks or shifts")
    lst.add_argument("what", choices=("models", "tasks", "shifts"))
    lst.add_argument("--include-path", action="append", default=[])
    lst.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from vittle_bench.config import load_suites, load_task_specs
    from vittle_bench.models.base import MODELS
    from vittle_bench.models.builtin import BUILTIN_MODELS
    from vittle_bench.shifts import SHIFTS

    include = [Path(p) for p in args.include_path]
    if args.what == "models":
        print("\n".join([f"builtin:{m}" for m in BUILTIN_MODELS]
                        + [f"{s}:<id-or-path>" for s in MODELS.names() if s != "builtin"]))
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
