"""Expands the grid model x task x shift x severity and runs every cell through the same pipeline:

    Sample -> shift.apply(sample, rng) -> adapter.build_request -> model.generate (batched, cached)
           -> adapter.parse / score -> SampleResult -> adapter.aggregate -> results.csv

Writes the run directory contract: manifest.json, samples.jsonl, results.csv (long form).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from tqdm import tqdm

from vittle_bench import __version__
from vittle_bench.cache import AnswerCache, cache_key
from vittle_bench.config import DEFAULT_SHIFTS, DEFAULT_TASKS, ConfigError, TaskSpec, resolve_shifts, resolve_tasks
from vittle_bench.data.sources import load_samples
from vittle_bench.models.base import Model, load_model, validate_model_spec
from vittle_bench.schema import RESULT_COLUMNS, CellResult, Request, Sample, SampleResult
from vittle_bench.shifts import ShiftCondition, sample_rng
from vittle_bench.tasks import TASK_ADAPTERS, TaskAdapter


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "vittle-bench"


@dataclass
class RunOptions:
    models: list[str]
    output: Path
    tasks: str = DEFAULT_TASKS
    shifts: str = DEFAULT_SHIFTS
    limit: int | None = None
    batch_size: int = 32
    seed: int = 0
    model_args: dict[str, Any] = field(default_factory=dict)
    include_paths: list[Path] = field(default_factory=list)
    cache_dir: Path = field(default_factory=default_cache_dir)
    use_cache: bool = True
    command_line: str = ""
    progress: bool = True


@dataclass
class RunSummary:
    output: Path
    n_records: int
    n_errors: int
    n_generated: int
    n_cached: int
    seconds: float


@dataclass
class _Plan:
    tasks: list[TaskSpec]
    conditions: list[ShiftCondition]


def plan_run(options: RunOptions) -> _Plan:
    """Validate every name and the output directory before anything heavy loads."""
    for spec in options.models:
        validate_model_spec(spec)
    tasks = resolve_tasks(options.tasks, options.include_paths)
    conditions = resolve_shifts(options.shifts, options.include_paths)
    if not tasks:
        raise ConfigError("no tasks selected")
    try:
        options.output.mkdir(parents=True, exist_ok=True)
        probe = options.output / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"output directory {options.output} is not writable ({exc.strerror})") from None
    return _Plan(tasks, conditions)


def _cell_seed(seed: int, *parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\x1f".join([str(seed), *parts]).encode()).digest()[:4], "little")


def _batches(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class _CellRunner:
    """Runs one model over one task under one shift condition, batch by batch."""

    def __init__(self, model: Model, cache: AnswerCache, options: RunOptions, counters: dict[str, int]) -> None:
        self.model, self.cache, self.options, self.counters = model, cache, options, counters

    def _generate(self, requests: list[Request], keys: list[str]) -> list[str | Exception]:
        cached = self.cache.get_many(keys)
        missing = [i for i, k in enumerate(keys) if k not in cached]
        self.counters["cached"] += len(keys) - len(missing)
        fresh: dict[int, str | Exception] = {}
        if missing:
            try:
                outputs: list[str | Exception] = list(self.model.generate([requests[i] for i in missing]))
            except Exception:  # isolate the failing sample(s): retry one by one
                outputs = []
                for i in missing:
                    try:
                        outputs.append(self.model.generate([requests[i]])[0])
                    except Exception as exc:  # noqa: BLE001 - recorded per sample, the run goes on
                        outputs.append(exc)
            fresh = dict(zip(missing, outputs))
            self.counters["generated"] += len(missing)
            self.cache.put_many({keys[i]: out for i, out in fresh.items() if isinstance(out, str)})
        return [cached[k] if k in cached else fresh[i] for i, k in enumerate(keys)]

    def run(self, adapter: TaskAdapter, samples: list[Sample], condition: ShiftCondition,
            bar: tqdm) -> list[SampleResult]:
        records: list[SampleResult] = []
        for batch in _batches(samples, self.options.batch_size):
            prepared: list[tuple[Sample, Sample | None, Request | None, str | None]] = []
            for sample in batch:
                try:
                    shifted = condition.shift.apply(sample, sample_rng(self.options.seed, condition.label, sample.sample_id))
                    request = adapter.build_request(shifted)
                    prepared.append((sample, shifted, request, None))
                except Exception as exc:  # noqa: BLE001 - a bad sample must not stop the run
                    prepared.append((sample, None, None, f"shift: {type(exc).__name__}: {exc}"))
            ready = [(i, p) for i, p in enumerate(prepared) if p[2] is not None]
            keys = [cache_key(self.model.fingerprint, p[2]) for _, p in ready]
            outputs = dict(zip([i for i, _ in ready], self._generate([p[2] for _, p in ready], keys)))
            key_of = dict(zip([i for i, _ in ready], keys))
            for i, (sample, shifted, request, error) in enumerate(prepared):
                records.append(self._record(adapter, condition, sample, shifted, request, outputs.get(i), error,
                                            key_of.get(i, "")))
            bar.update(len(batch))
        return records

    def _record(self, adapter: TaskAdapter, condition: ShiftCondition, sample: Sample, shifted: Sample | None,
                request: Request | None, output: str | Exception | None, error: str | None, key: str) -> SampleResult:
        record = SampleResult(
            model=self.model.name, task=sample.task, shift=condition.name, shift_kind=condition.kind,
            severity=condition.severity, sample_id=sample.sample_id,
            input_hash=shifted.content_hash() if shifted else "", prompt=request.prompt if request else "",
            answer=sample.answer, raw_output=None, parsed=None, parse_ok=False, score=None,
            category=sample.category, scorer=getattr(adapter, "judge", None), error=error, cache_key=key)
        if isinstance(output, Exception):
            record.error = f"generate: {type(output).__name__}: {output}"
        elif output is not None and shifted is not None:
            record.raw_output = output
            parsed = adapter.parse(output, shifted)
            record.parsed, record.parse_ok = parsed.value, parsed.ok
            record.score, record.reference_score = adapter.score(shifted, parsed, output)
        return record


def aggregate_cell(adapter: TaskAdapter, records: list[SampleResult], seed: int) -> list[CellResult]:
    first = records[0]
    ok = [r for r in records if r.error is None]
    rows = adapter.aggregate(ok, seed) if ok else []
    rows = list(rows) + [("n_errors", float(len(records) - len(ok)), None, None, len(records))]
    return [CellResult(first.model, first.task, first.shift, first.shift_kind, first.severity, metric, value, low, high, n)
            for metric, value, low, high, n in rows]


def _write_results(path: Path, cells: list[CellResult]) -> None:
    tmp = path.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(RESULT_COLUMNS)
        for c in cells:
            writer.writerow([c.model, c.task, c.shift, c.shift_kind, c.severity, c.metric, f"{c.value:.6g}",
                             "" if c.ci_low is None else f"{c.ci_low:.6g}", "" if c.ci_high is None else f"{c.ci_high:.6g}", c.n])
    os.replace(tmp, path)


def _versions() -> dict[str, str]:
    import torch
    import transformers

    return {"vittle_bench": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__}


def _manifest(options: RunOptions, plan: _Plan, models: list[dict], started: str, summary: dict) -> dict:
    return {
        "command_line": options.command_line, "started": started,
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"), "seed": options.seed,
        "versions": _versions(), "models": models,
        "tasks": [{"task": t.task, "source": t.source, "subset": t.subset, "adapter": t.adapter,
                   "adapter_args": t.adapter_args, "config": t.path.name} for t in plan.tasks],
        "shifts": [{"label": c.label, "name": c.name, "kind": c.kind, "severity": c.severity,
                    "version": getattr(c.shift, "version", "")} for c in plan.conditions],
        "limit": options.limit, "batch_size": options.batch_size, "summary": summary,
    }


def run(options: RunOptions) -> RunSummary:
    started, start = datetime.now(timezone.utc).isoformat(timespec="seconds"), time.time()
    plan = plan_run(options)
    cache = AnswerCache(options.cache_dir / "answers.sqlite" if options.use_cache else None)
    counters = {"generated": 0, "cached": 0}
    cells: list[CellResult] = []
    model_info: list[dict] = []
    n_records = n_errors = 0
    samples_path = options.output / "samples.jsonl"
    partial = samples_path.with_suffix(".jsonl.partial")
    task_samples = {spec.task: load_samples(spec, options.cache_dir, options.limit) for spec in plan.tasks}
    total = sum(len(s) for s in task_samples.values()) * len(plan.conditions)
    try:
        with partial.open("w") as out:
            for model_spec in options.models:
                model = load_model(model_spec, **options.model_args)
                model_info.append({"spec": model_spec, "name": model.name, "fingerprint": model.fingerprint,
                                   "model_args": options.model_args})
                runner = _CellRunner(model, cache, options, counters)
                with tqdm(total=total, desc=model.name, unit="sample", disable=not options.progress,
                          file=sys.stderr) as bar:
                    for spec in plan.tasks:
                        adapter = TASK_ADAPTERS.get(spec.adapter)(**spec.adapter_args)
                        for condition in plan.conditions:
                            bar.set_postfix_str(f"{spec.task} / {condition.label}")
                            records = runner.run(adapter, task_samples[spec.task], condition, bar)
                            for r in records:
                                out.write(json.dumps(r.to_json()) + "\n")
                            out.flush()
                            os.fsync(out.fileno())
                            n_records += len(records)
                            n_errors += sum(r.error is not None for r in records)
                            cells += aggregate_cell(adapter, records,
                                                    _cell_seed(options.seed, model.name, spec.task, condition.label))
                del model
        os.replace(partial, samples_path)
    finally:
        cache.close()
    _write_results(options.output / "results.csv", cells)
    summary = RunSummary(options.output, n_records, n_errors, counters["generated"], counters["cached"],
                         round(time.time() - start, 1))
    manifest = _manifest(options, plan, model_info, started, {k: v for k, v in summary.__dict__.items() if k != "output"})
    (options.output / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return summary
