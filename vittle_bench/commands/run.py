"""`vittle-bench run`: evaluate models on tasks x shifts and print the leaderboard.

Exit codes: 0 the run finished (some samples may have failed: the summary says how many); 1 every sample
failed, or --fail-fast stopped the run; 2 a usage error, or the run directory is in use by another run;
130 interrupted (Ctrl-C; rerunning the same command resumes).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from vittle_bench.commands.common import INTERRUPTED, library_bars_off
from vittle_bench.config import DEFAULT_SHIFTS, DEFAULT_TASKS, ConfigError

if TYPE_CHECKING:
    from vittle_bench.run_plan import RunOptions


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="evaluate models on tasks x shifts")
    run.add_argument("--model", required=True, help="comma-separated: builtin:tiny-llava, hf:ORG/NAME or hf:PATH")
    run.add_argument("--model-args", default="", help="key=value,... passed to the model loader (e.g. dtype=bfloat16)")
    run.add_argument("--tasks", help=f"task names or groups (default: {DEFAULT_TASKS})")
    run.add_argument("--shifts",
                     help=f"suites or conditions like frost@3, frost@3+keyboard@2 (default: {DEFAULT_SHIFTS})")
    run.add_argument("--plan", help="an evaluation plan (name or YAML file): its cells instead of the --tasks x "
                     "--shifts product (`vittle-bench list plans`; docs/reproduce.md)")
    run.add_argument("--limit", type=int, help="first N samples of each task")
    run.add_argument("--dry-run", action="store_true", help="print the cells, generations, judge calls, shifted "
                     "images and estimated time, then exit without evaluating")
    run.add_argument("--check-cache", action="store_true", help="--dry-run: count the answers the answer cache "
                     "already holds, exactly (loads every cell's inputs and each model, shifts nothing; slower)")
    run.add_argument("--throughput", type=float, help="samples per second for --dry-run's time estimate (default: "
                     "measured by a short probe of the first model)")
    run.add_argument("--batch-size", type=int, default=32)
    run.add_argument("--shift-workers", type=int, default=1, help="processes that compute shifted images (default "
                     "1: the run's own process)")
    run.add_argument("--prefetch", type=int, default=2, help="batches shifted ahead while the model generates "
                     "(default 2; 0: shift each batch just before generating it)")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--output", type=Path, help="run directory (default: vittle-runs/<model>)")
    run.add_argument("--cache-dir", type=Path, help="answers, built-in data (default: ~/.cache/vittle-bench)")
    run.add_argument("--no-cache", action="store_true", help="neither read nor write the answer cache")
    run.add_argument("--judge", help="judge for open-ended tasks: openai:MODEL | embedding | overlap "
                     "(default: each task's own, the offline overlap stand-in for built-in tasks)")
    run.add_argument("--judge-args", default="", help="key=value,... for the judge (base_url, api_key, concurrency)")
    run.add_argument("--metrics", default="",
                     help="extra metrics: emi (EMI per cell and EMID per shift, open-ended tasks)")
    run.add_argument("--emi-encoders", default="", help="IMAGE,TEXT encoder names for EMI (default: CLIP ViT-B/32 + "
                     "XLM-R from the hub, else the offline effnet-lite0 + minilm-l6)")
    run.add_argument("--emi-estimator", default="club-reference",
                     help="CLUB estimator for EMI: a recipe fitted on the run's pairs (club-reference, the EMI "
                     "repository's, default; club-standardised), or a file: a run's emi_estimator.pt or a checkpoint "
                     "in the EMI repository's layout (compare EMI across runs); docs/emi.md")
    run.add_argument("--fresh", action="store_true", help="recompute every answer (the cache is still updated)")
    run.add_argument("--fail-fast", action="store_true", help="stop at the first sample that fails instead of "
                     "recording the error and going on")
    run.add_argument("--data-dir", type=Path, help="offline copies of hub datasets: DIR/ORG/NAME[/CONFIG] as "
                     "save_to_disk folders or the hub's parquet files (docs/datasets.md)")
    run.add_argument("--include-path", action="append", default=[], help="extra directory of task/suite YAML files")
    run.set_defaults(func=main)


ALL_FAILED = 1


def _models(text: str) -> list[str]:
    """`--model a,b`: each model once, in order; an empty entry is a typo, not a model."""
    entries = [m.strip() for m in text.split(",")]
    if not any(entries):
        raise ConfigError("--model: no model given (e.g. --model builtin:tiny-llava)")
    if not all(entries):
        raise ConfigError(f"--model {text!r}: an empty entry between commas")
    unique = list(dict.fromkeys(entries))
    repeated = sorted({m for m in entries if entries.count(m) > 1})
    if repeated:
        print(f"vittle-bench: {', '.join(repeated)} listed more than once in --model; each model runs once",
              file=sys.stderr)
    return unique


def _encoder_pair(text: str) -> tuple[str | None, str | None]:
    if not text:
        return None, None
    parts = [p.strip() or None for p in text.split(",")]
    if len(parts) != 2:
        raise ConfigError("--emi-encoders takes IMAGE,TEXT (e.g. effnet-lite0,minilm-l6)")
    return parts[0], parts[1]


def _dry_run(options: RunOptions, throughput: float | None, check_cache: bool) -> int:
    from vittle_bench.dry_run import answered_in, cached_answers, estimate, probe_throughput, report
    from vittle_bench.models.base import split_spec
    from vittle_bench.run_plan import plan_run

    if throughput is not None and throughput <= 0:
        raise ConfigError("--throughput must be a positive number of samples per second")
    plan = plan_run(options, writes=False)
    measured = throughput is None
    rate = throughput
    if rate is None:
        with library_bars_off(with_datasets=False):  # the probe loads a model, no dataset
            rate = probe_throughput(options)
    names = [f"{scheme}:{name}" for scheme, name in map(split_spec, options.models)]
    answered, where = answered_in(options.output), "the run directory"
    if check_cache:
        with library_bars_off(with_datasets=False):
            answered, where = cached_answers(plan, options), "the answer cache"
    print(report(estimate(plan, options, names, answered), rate, measured, where))
    return 0


def _options(args: argparse.Namespace) -> RunOptions:
    """The run's options from the command line (the recorded command line with secrets redacted)."""
    from vittle_bench.models import parse_model_args
    from vittle_bench.openai_client import redact_text
    from vittle_bench.run_plan import RunOptions, default_cache_dir

    if args.plan and (args.tasks or args.shifts):
        raise ConfigError("--plan names its own tasks and shifts; leave out --tasks and --shifts")
    models = _models(args.model)
    output = args.output or Path("vittle-runs") / "_".join(m.replace(":", "-").replace("/", "-") for m in models)
    model_args = parse_model_args(args.model_args, "--model-args")
    judge_args = parse_model_args(args.judge_args, "--judge-args")
    return RunOptions(
        models=models, output=output, tasks=args.tasks or DEFAULT_TASKS, shifts=args.shifts or DEFAULT_SHIFTS,
        plan=args.plan, limit=args.limit,
        batch_size=args.batch_size, shift_workers=args.shift_workers, prefetch=args.prefetch, seed=args.seed,
        model_args=model_args,
        include_paths=[Path(p) for p in args.include_path], cache_dir=args.cache_dir or default_cache_dir(),
        use_cache=not args.no_cache, fresh=args.fresh, fail_fast=args.fail_fast, judge=args.judge,
        data_dir=args.data_dir,
        metrics=tuple(m.strip() for m in args.metrics.split(",") if m.strip()),
        emi_encoders=_encoder_pair(args.emi_encoders), emi_estimator=args.emi_estimator,
        judge_args=judge_args, command_line=redact_text(redact_text(shlex.join(["vittle-bench", *sys.argv[1:]]),
                                                                     model_args), judge_args))


def main(args: argparse.Namespace) -> int:
    from vittle_bench.cell_runner import SampleError
    from vittle_bench.leaderboard import build_table
    from vittle_bench.render import render
    from vittle_bench.runner import RunInterrupted, run

    options = _options(args)
    if args.dry_run:
        return _dry_run(options, args.throughput, args.check_cache)
    try:
        summary = run(options)
    except SampleError as exc:
        print(f"vittle-bench: stopped (--fail-fast): {exc}", file=sys.stderr)
        return 1
    except RunInterrupted as stop:
        if stop.main_process:  # a rerun resumes from the answer cache, where every answer was kept
            if args.no_cache:
                message = f"nothing is kept under --no-cache: a rerun computes its {stop.records_kept} records again"
            else:
                then = "run the same command without --fresh to resume" if args.fresh else \
                    "run the same command to resume"
                message = f"{stop.records_kept} records kept in {stop.output}; {then}"
            print(f"vittle-bench: interrupted — {message}", file=sys.stderr)
        return INTERRUPTED
    if not summary.main_process:
        return 0
    all_failed = summary.n_errors == summary.n_records
    if not all_failed:
        print(render(build_table([summary.output]), "markdown"))
    errors = f", {summary.n_errors} errors (see samples.jsonl)" if summary.n_errors else ", no errors"
    print(f"{'' if all_failed else chr(10)}{summary.n_records} samples ({summary.n_generated} generated, "
          f"{summary.n_cached} cached){errors} in {summary.seconds:.0f}s -> {summary.output}/")
    common = ""
    if summary.common_error is not None:
        common = f"commonest error ({summary.common_error_count} of {summary.n_errors}): " \
                 f"{summary.common_error.splitlines()[0]}"
    if not all_failed:
        if common:
            print(common)
        return 0
    if summary.n_records:
        print(f"vittle-bench: error: every sample failed; the {common}", file=sys.stderr)
    else:
        print("vittle-bench: error: the selected tasks have no samples; nothing was evaluated", file=sys.stderr)
    return ALL_FAILED
