"""`vittle-bench list models|tasks|adapters|shifts|judges|plans`."""

from __future__ import annotations

import argparse
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, cast

from vittle_bench.registry import LISTED_KINDS, PluginError, Registry

if TYPE_CHECKING:
    from vittle_bench.adapters.base import TaskAdapter


def register(sub: argparse._SubParsersAction) -> None:
    lst = sub.add_parser("list", help="list models, tasks, task adapters, shifts, judges or evaluation plans")
    lst.add_argument("what", choices=LISTED_KINDS)
    lst.add_argument("--include-path", action="append", default=[])
    lst.set_defaults(func=main)


def _headline(adapter: type[TaskAdapter], adapter_args: dict) -> str:
    """The task's headline metric as its config sets the adapter up (a judged task's depends on its judge;
    one that needs --judge to run shows its adapter's default)."""
    from vittle_bench.config import ConfigError

    try:
        return adapter(**adapter_args).headline
    except ConfigError:
        return adapter.primary_metric


def _list_adapters() -> None:
    """One line per task adapter (what a task YAML's `adapter:` accepts): its declared headline metric, every
    metric it reports, and whether a judge scores it."""
    from vittle_bench.adapters import TASK_ADAPTERS

    adapters = {name: cast("type[TaskAdapter]", TASK_ADAPTERS.get(name)) for name in TASK_ADAPTERS.names()}
    width = max([len(name) for name in adapters] + [7])
    headline = max([len(adapter.primary_metric) for adapter in adapters.values()] + [8])
    print(f"{'adapter':{width}s} {'headline':{headline}s} judged metrics")
    for name, adapter in adapters.items():
        metrics = ", ".join(m.name for m in adapter.metrics)
        print(f"{name:{width}s} {adapter.primary_metric:{headline}s} {'yes' if adapter.judged else 'no':6s} {metrics}")
    _print_broken(TASK_ADAPTERS)


def _print_broken(registry: Registry, extra: dict[str, str] | None = None) -> None:
    """One line per name a plugin fails to serve, after the entries that work."""
    for name, message in {**registry.broken(), **(extra or {})}.items():
        print(f"{name:28s} BROKEN  {message}")


def main(args: argparse.Namespace) -> int:
    from vittle_bench.builtin.model import BUILTIN_MODELS
    from vittle_bench.config import load_suites, load_task_specs
    from vittle_bench.models.base import MODELS
    from vittle_bench.shifts import SHIFTS

    include = [Path(p) for p in args.include_path]
    if args.what == "models":
        print("\n".join([f"builtin:{m}" for m in BUILTIN_MODELS]
                        + [f"{s}:<id-or-path>" for s in MODELS.names() if s != "builtin"]))
        _print_broken(MODELS)
    elif args.what == "tasks":
        from vittle_bench.adapters import TASK_ADAPTERS
        from vittle_bench.data.sources import task_size

        specs = list(load_task_specs(include).values())
        width = max([len(s.task) for s in specs] + [4])
        print(f"{'task':{width}s} {'size':>6s} {'adapter':11s} {'metric':30s} {'source':40s} description")
        broken = TASK_ADAPTERS.broken()
        for spec in specs:
            metric = "(broken plugin)" if spec.adapter in broken else \
                _headline(TASK_ADAPTERS.get(spec.adapter), spec.adapter_args)
            print(f"{spec.task:{width}s} {task_size(spec):>6s} {spec.adapter:11s} {metric:30s} {spec.source:40s} "
                  f"{spec.description}")
        _print_broken(TASK_ADAPTERS)
    elif args.what == "adapters":
        _list_adapters()
    elif args.what == "plans":
        from vittle_bench.plans import expand_plan, load_plans

        for name, plan in load_plans(include).items():
            cells = expand_plan(plan, include)
            print(f"plan {name:22s} {len(cells):4d} cells {len({c.dataset for c in cells}):4d} datasets  "
                  f"{textwrap.shorten(plan.description, 90)}")
    elif args.what == "judges":
        import sys

        from vittle_bench.judges import JUDGES

        for name in JUDGES.names():  # what --judge and a task's `judge:` accept
            judge = JUDGES.get(name)
            usage = f"{name}:<model>" if judge.needs_target and not judge.pairwise else name
            kind = f"stand-in (metrics *_{judge.label})" if judge.label else "LLM judge"
            paragraph = (sys.modules[judge.__module__].__doc__ or "").strip().split("\n\n")[0]
            about = " ".join(paragraph.split()).split(". ")[0].rstrip(".")  # its module docstring's first sentence
            if judge.pairwise:  # no --judge value: what a pairwise task runs for --judge openai:<model>
                kind, about = "LLM judge of pairwise tasks", f"{about} (used for --judge openai:<model>)"
            print(f"{usage:28s} {kind:32s} {about}")
        _print_broken(JUDGES)
    else:
        for name, suite in load_suites(include).items():
            print(f"suite {name:22s} {len(suite['conditions'])} conditions")
        _list_shifts(SHIFTS)
    return 0


def _list_shifts(shifts: Registry) -> None:
    """One line per shift (kind, family, the severities it accepts), then the count per kind and family."""
    from collections import Counter

    from vittle_bench.shifts.base import build_shift, format_severities

    unbuildable: dict[str, str] = {}
    counts: Counter[tuple[str, str]] = Counter()
    for name in shifts.names():
        try:
            shift = build_shift(name, 1)
        except PluginError as exc:
            unbuildable[name] = str(exc)
            continue
        counts[shift.kind, shift.family] += 1
        print(f"{name:28s} {shift.kind:6s} {shift.family:10s} severities {format_severities(shift.severities)}")
    _print_broken(shifts, unbuildable)
    for kind in dict.fromkeys(kind for kind, _ in counts):
        total = sum(n for (k, _), n in counts.items() if k == kind)
        split = ", ".join(f"{family} {n}" for (k, family), n in sorted(counts.items()) if k == kind and family)
        print(f"{total} {kind} shifts" + (f" ({split})" if split else ""))
