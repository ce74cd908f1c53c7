"""Expands the grid model x task x shift x severity and runs every cell through the same pipeline:

    Sample -> answer key -> [shift -> adapter.build_request -> model.generate] unless cached
           -> adapter.parse / score -> SampleResult -> adapter.aggregate -> results.csv

(one batch: `cell_runner.py`). Writes the run directory contract: manifest.json, samples.jsonl, results.csv
(long form); the manifest's summary counts, per condition, the shifted images computed and served from cache.

Scale-out: under `accelerate launch` / torchrun each process takes a contiguous 1/world_size block of each
cell and appends its records to shards/rank<k>.jsonl; rank 0 merges the shards in grid order, so the run
directory is identical whatever the number of processes. Resumption rides on the content-keyed answer
cache, which is shared by all processes and independent of how the grid was split.

One run owns a run directory at a time (`run_lock.RunDirectoryLock`, held by rank 0 for all ranks), so the
shards one run writes are never deleted or overwritten by another. What a run is asked to do, and every check
before anything loads, is `run_plan.py`.
"""

from __future__ import annotations

import heapq
import json
import os
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from itertools import groupby
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from vittle_bench.adapters import TaskAdapter
from vittle_bench.cache import AnswerCache
from vittle_bench.cell_runner import Batch, CellRunner
from vittle_bench.data.lazy import MappedSamples
from vittle_bench.data.sources import load_samples
from vittle_bench.errors import ConfigError
from vittle_bench.metrics.stats import MetricValue, cell_seed
from vittle_bench.models.base import Model
from vittle_bench.models.deferred import load_model_when_needed
from vittle_bench.openai_client import redact_model_args
from vittle_bench.prefetch import prefetched
from vittle_bench.results_io import cell_result, write_results
from vittle_bench.run_lock import RunDirectoryLock, describe_holder
from vittle_bench.run_manifest import manifest
from vittle_bench.run_plan import RunOptions, RunPlan, plan_run
from vittle_bench.schema import CellResult, Sample, SampleResult
from vittle_bench.shifts import ShiftCondition
from vittle_bench.shifts.engine import ShiftEngine
from vittle_bench.shifts.image_cache import ShiftedImageCache
from vittle_bench.workers import WorkerGroup


@dataclass
class RunSummary:
    output: Path
    n_records: int
    n_errors: int
    n_generated: int
    n_cached: int
    seconds: float
    main_process: bool = True  # False on the other ranks of a multi-process run (rank 0 reports)
    common_error: str | None = None  # the error most records share (the first place to look when many fail)
    common_error_count: int = 0
    # per condition label: {"computed": images shifted, "served_from_cache": images shown without shifting again}
    shifted_images: dict[str, dict[str, int]] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        """The summary as manifest.json keeps it (the run directory and the rank are implied there)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("output", "main_process")}


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run, with what it leaves behind. A KeyboardInterrupt still, so that no `except Exception`
    on the way up swallows it."""

    def __init__(self, output: Path, records_kept: int, main_process: bool) -> None:
        super().__init__(output)
        self.output, self.records_kept, self.main_process = output, records_kept, main_process


@dataclass(frozen=True)
class Cell:
    """One (task, condition) cell of the grid: its place in the grid order, the adapter that prepares and scores
    it and the rows it is evaluated on (the task's own, or a domain's swapped-in rows)."""

    task_index: int
    condition_index: int
    task: str
    condition: ShiftCondition
    adapter: TaskAdapter
    samples: Sequence[Sample]


def aggregate_cell(adapter: TaskAdapter, records: list[SampleResult], seed: int) -> list[CellResult]:
    """The adapter's metrics over the cell's scored records, and the count of records that failed."""
    ok = [r for r in records if r.error is None]
    values = list(adapter.aggregate(ok, seed)) if ok else []
    values.append(MetricValue("n_errors", float(len(records) - len(ok)), None, None, len(records)))
    return [cell_result(records[0], v, primary=v.metric == adapter.headline) for v in values]


def _share(n: int, rank: int, world: int) -> range:
    """The positions of a cell's n samples that process `rank` of `world` evaluates: a contiguous block, so the
    questions about one image, which datasets keep together (POPE's six, MME's two), land on one process and
    their image is shifted once."""
    return range(n * rank // world, n * (rank + 1) // world)


def _my_share(samples: Sequence[Sample], rank: int, world: int) -> Iterator[tuple[int, Sample]]:
    for index in _share(len(samples), rank, world):
        yield index, samples[index]


def grid_cells(options: RunOptions, plan: RunPlan) -> list[Cell]:
    """The grid's cells in grid order: each task under each condition with the task's own rows, or under a
    domain condition the rows its declaration swaps in (prepared by the task's adapter like its own); a domain
    not declared for a task gives no cell."""
    # Gold answers are normalised once, here, by each task's adapter (e.g. "Yes " -> "yes" for POPE).
    task_samples: dict[str, Sequence[Sample]] = {
        spec.task: MappedSamples(load_samples(spec, options.cache_dir, options.limit, options.data_dir),
                                 plan.adapters[spec.task].prepare) for spec in plan.tasks}
    cells = []
    for t, spec in enumerate(plan.tasks):
        for c, condition in enumerate(plan.conditions):
            if not plan.has_cell(spec.task, condition):
                continue
            adapter = plan.adapter(spec.task, condition)
            if condition.kind != "domain":
                cells.append(Cell(t, c, spec.task, condition, adapter, task_samples[spec.task]))
                continue
            rows = plan.domains.samples(spec, condition, options.cache_dir, options.limit, options.data_dir)
            if rows is not None:
                cells.append(Cell(t, c, spec.task, condition, adapter, MappedSamples(rows, adapter.prepare)))
    return cells


def _evaluate(options: RunOptions, cells: list[Cell], group: WorkerGroup, shard_path: Path,
              counters: dict[str, int], shifted_images: dict[str, dict[str, int]]) -> list[dict]:
    """This process's share of the grid, model by model, appended to its shard file. Shifted images
    are cached on disk by content hash (size-bounded), so other models and reruns reuse them; how many were
    computed and served per condition goes to `shifted_images`."""
    cache_dir = options.cache_dir if options.use_cache else None
    answers = cache_dir / "answers.sqlite" if cache_dir else None
    with closing(AnswerCache(answers)) as cache, closing(AnswerCache(answers, check_same_thread=False)) as reader, \
            closing(ShiftEngine(ShiftedImageCache(cache_dir / "shifted-images") if cache_dir else None,
                                options.shift_workers)) as engine, \
            shard_path.open("w") as out:
        models = [_evaluate_model(m, model_spec, options, cells, group, out,
                                  lambda model: CellRunner(model, cache, engine, options, counters, reader))
                  for m, model_spec in enumerate(options.models)]
        shifted_images.update((label, dict(count)) for label, count in engine.counts.items())
        return models


def _evaluate_model(m: int, model_spec: str, options: RunOptions, cells: list[Cell], group: WorkerGroup,
                    out: TextIO, runner_for: Callable[[Model], CellRunner]) -> dict[str, Any]:
    """One model over this process's share of every cell (the model is released when this returns). Batches
    are looked up in the answer cache here and shifted ahead of the model (`prefetch.py`). A killed run resumes
    from the answer cache, which commits each batch's answers before the next; the shard, rewritten by every
    run, is flushed per batch so an interrupted run can say how much it finished. A record's `order` is its place
    in the grid, for the merge."""
    model = load_model_when_needed(model_spec, group.model_args(options.model_args),
                                   options.cache_dir if options.use_cache else None)
    runner = runner_for(model)
    share = sum(len(_share(len(cell.samples), group.rank, group.world_size)) for cell in cells)
    with tqdm(total=share, desc=model.name, unit="sample", file=sys.stderr,
              disable=not (options.progress and group.is_main)) as bar:
        looked_up = _looked_up(runner, cells, group, options.batch_size)
        for cell, indices, batch in prefetched(looked_up, lambda item: (item[0], item[1], runner.prepare(item[2])),
                                               options.prefetch, costly=lambda item: item[2].needs_shift):
            bar.set_postfix_str(f"{cell.task} / {cell.condition.label}", refresh=False)
            records = runner.finish(batch)
            out.writelines(json.dumps({"order": [m, cell.task_index, cell.condition_index, index],
                                       **record.to_json()}) + "\n" for index, record in zip(indices, records))
            out.flush()
            bar.update(len(indices))
    return {"spec": model_spec, "name": model.name, "fingerprint": model.fingerprint,
            "fingerprint_info": model.fingerprint_info,
            "model_args": redact_model_args(options.model_args)}


def _looked_up(runner: CellRunner, cells: list[Cell], group: WorkerGroup,
               batch_size: int) -> Iterator[tuple[Cell, list[int], Batch]]:
    """This process's share of every cell, batch by batch, with each sample's place in its cell, looked up in
    the answer cache (nothing shifted yet)."""
    for cell in cells:
        mine = list(_my_share(cell.samples, group.rank, group.world_size))
        for start in range(0, len(mine), batch_size):
            part = mine[start:start + batch_size]
            yield cell, [index for index, _ in part], runner.look_up(cell.adapter, [s for _, s in part],
                                                                     cell.condition)


def _merged_records(shards: list[Path]) -> Iterator[dict]:
    """All shards' records in grid order (each shard is already in grid order)."""
    streams = [(json.loads(line) for line in path.open()) for path in shards]
    yield from heapq.merge(*streams, key=lambda r: r["order"])


def _finalise(options: RunOptions, plan: RunPlan, shards: list[Path],
              grid: list[Cell]) -> tuple[int, Counter[str], list[CellResult], dict[str, Any]]:
    """Merge shards into samples.jsonl and aggregate cell by cell (one cell in memory at a time); each
    run-level metric collects the cells it reads and adds its rows at the end. Returns the number of records,
    how often each error occurred, the rows and the run-level metrics' manifest entries."""
    fields = set(SampleResult.__dataclass_fields__)
    cells: list[CellResult] = []
    n_records = 0
    errors: Counter[str] = Counter()
    cell_at = {(cell.task_index, cell.condition_index): cell for cell in grid}
    partial = options.output / "samples.jsonl.partial"
    with partial.open("w") as out:
        for (_, t, c), group in groupby(_merged_records(shards), key=lambda r: tuple(r["order"][:3])):
            records = [SampleResult(**{k: v for k, v in r.items() if k in fields}) for r in group]
            out.writelines(json.dumps(r.to_json()) + "\n" for r in records)
            n_records += len(records)
            errors.update(r.error for r in records if r.error is not None)
            cell, model = cell_at[t, c], records[0].model
            cells += aggregate_cell(cell.adapter, records,
                                    cell_seed(options.seed, model, cell.task, cell.condition.label))
            for metric in plan.run_metrics:
                if metric.reads(cell.adapter):
                    metric.collect(model, cell.task, cell.condition, records, cell.samples)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, options.output / "samples.jsonl")
    entries = {}
    for name, metric in zip(options.metrics, plan.run_metrics):
        rows, entries[name] = metric.finish(plan.conditions)
        cells += rows
    return n_records, errors, cells, entries


def _summed_shifted_images(totals: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """The ranks' shifted-image counts added up per condition (a rank may compute what another also did)."""
    summed: dict[str, Counter[str]] = {}
    for total in totals:
        for label, count in total["shifted_images"].items():
            summed.setdefault(label, Counter()).update(count)
    return {label: dict(count) for label, count in summed.items()}


def _records_kept(shard_dir: Path) -> int:
    """Complete records in the shards (a line cut short by an interruption is not one)."""
    kept = 0
    for path in shard_dir.glob("rank*.jsonl"):
        with path.open("rb") as f:
            kept += sum(line.endswith(b"\n") for line in f)
    return kept


def run(options: RunOptions) -> RunSummary:
    """Evaluate the grid into `options.output`, which this run owns until it returns. Ctrl-C raises
    RunInterrupted, saying how much is kept; a user's mistake raises ConfigError before anything heavy loads."""
    started, start = datetime.now(timezone.utc).isoformat(timespec="seconds"), time.time()
    plan = plan_run(options)
    group = WorkerGroup.current()
    lock = RunDirectoryLock(options.output, options.command_line)
    refusal = None
    if group.is_main:  # rank 0 holds the lock for every rank of the run
        try:
            lock.acquire()
        except ConfigError as exc:
            refusal = str(exc)
    refusal = group.share(refusal)  # all ranks stop, or all go on
    if refusal is not None:
        raise ConfigError(refusal)
    shard_dir = options.output / "shards"
    try:
        if lock.taken_over and options.progress:
            print(f"vittle-bench: taking over {options.output} from a run that stopped without releasing it "
                  f"({describe_holder(lock.taken_over)})", file=sys.stderr)
        return _run_owned(options, plan, group, shard_dir, started, start)
    except KeyboardInterrupt:
        kept = _records_kept(shard_dir) if group.is_main and shard_dir.is_dir() else 0
        raise RunInterrupted(options.output, kept, group.is_main) from None
    except BaseException:
        if group.world_size == 1 and shard_dir.is_dir() and not _records_kept(shard_dir):
            shutil.rmtree(shard_dir)  # a run that failed before its first record leaves nothing behind
        raise
    finally:
        if group.is_main:
            lock.release()


def _run_owned(options: RunOptions, plan: RunPlan, group: WorkerGroup, shard_dir: Path, started: str,
               start: float) -> RunSummary:
    if plan.skipped and group.is_main and options.progress:
        print(f"vittle-bench: skipping {len(plan.skipped)} condition(s) of the suites that no selected task declares "
              f"(domain shifts of other tasks): {', '.join(c.label for c in plan.skipped)}", file=sys.stderr)
    if group.is_main:
        shutil.rmtree(shard_dir, ignore_errors=True)  # a killed run's shards: their answers are in the cache
        shard_dir.mkdir(exist_ok=True)
    group.wait()
    counters = {"generated": 0, "cached": 0}
    shifted_images: dict[str, dict[str, int]] = {}
    grid = grid_cells(options, plan)
    model_info = _evaluate(options, grid, group, shard_dir / f"rank{group.rank}.jsonl", counters, shifted_images)
    (shard_dir / f"rank{group.rank}.counters.json").write_text(json.dumps({**counters,
                                                                           "shifted_images": shifted_images}))
    group.wait()
    summary = RunSummary(options.output, 0, 0, 0, 0, 0.0, main_process=False)
    if group.is_main:
        shards = sorted(shard_dir.glob("rank*.jsonl"))
        totals = [json.loads(p.read_text()) for p in sorted(shard_dir.glob("rank*.counters.json"))]
        n_records, errors, cells, metric_entries = _finalise(options, plan, shards, grid)
        write_results(options.output / "results.csv", cells)
        common_error, common_count = errors.most_common(1)[0] if errors else (None, 0)
        summary = RunSummary(options.output, n_records, sum(errors.values()), sum(t["generated"] for t in totals),
                             sum(t["cached"] for t in totals), round(time.time() - start, 1),
                             common_error=common_error, common_error_count=common_count,
                             shifted_images=_summed_shifted_images(totals))
        record = {**manifest(options, plan, model_info, started, summary.record(), group.world_size),
                  **metric_entries}
        tmp = options.output / "manifest.json.tmp"
        tmp.write_text(json.dumps(record, indent=1))
        os.replace(tmp, options.output / "manifest.json")
        shutil.rmtree(shard_dir)
    group.wait()
    return summary
