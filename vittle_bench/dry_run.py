"""`run --dry-run`: what a run would cost, before it costs anything.

Counted per dataset row (a plan block's `dataset` joins its tasks, e.g. POPE's three splits; otherwise one row
per task x condition) from the tasks' declared sizes, without loading any data: samples, generations (samples x
models), answers already there, LLM judge calls and their prompt tokens, and shifted images to compute (an
upper bound: one per sample, where a run shifts each distinct image once per condition). The
wall time follows from a throughput given with `--throughput` or measured by a short probe of the first model.

"Already there" is cheap by default: the answers in the run directory (a resumed or extended run). The answer
cache is keyed by the source sample's content, the shift and the model's fingerprint (derived before shifting),
so counting its hits exactly (`--check-cache`) loads every cell's rows and each model, but shifts nothing.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate
from tqdm import tqdm

from vittle_bench.builtin.scenes import draw_scene, scene_rng
from vittle_bench.cache import AnswerCache
from vittle_bench.cell_runner import CellRunner
from vittle_bench.data.llava_bench import llava_visual_contexts
from vittle_bench.data.sources import task_size
from vittle_bench.judges.rubrics import SYSTEM_PROMPT, judge_prompt
from vittle_bench.models.base import load_model
from vittle_bench.models.deferred import load_model_when_needed
from vittle_bench.run_plan import RunOptions, RunPlan
from vittle_bench.runner import grid_cells
from vittle_bench.schema import Request
from vittle_bench.shifts.engine import ShiftEngine

CHARS_PER_TOKEN = 4  # the usual English average for GPT tokenisers
ASSUMED_ITEM_TOKENS = 300  # question + reference answer + model answer of one judged item, not known before a run
PROBE_REQUESTS = 8
PROBE_NEW_TOKENS = 32


@dataclass
class DatasetCost:
    dataset: str
    cells: int = 0
    samples: int = 0
    unknown_size: bool = False
    generations: int = 0
    answered: int = 0
    judge_calls: int = 0
    judge_tokens: int = 0
    shifted_images: int = 0


def _cells(plan: RunPlan) -> Iterator[tuple[str, str, str]]:
    """(dataset row, task, condition label) of every cell the run would evaluate."""
    if plan.plan_cells is not None:
        for cell in plan.plan_cells:
            yield cell.dataset, cell.task.task, cell.condition.label
        return
    for spec in plan.tasks:
        for condition in plan.conditions:
            if condition.kind != "domain" or plan.domains.task_spec(spec, condition) is not None:
                yield f"{spec.task} × {condition.label}", spec.task, condition.label


def _judge_tokens_per_call(rubric: str, context_tokens: int) -> int:
    layout = len(SYSTEM_PROMPT) + len(judge_prompt("", "", "", None, rubric))
    return layout // CHARS_PER_TOKEN + context_tokens + ASSUMED_ITEM_TOKENS


def _context_tokens() -> int:
    """LLaVA-Bench-COCO's judge context (captions and boxes, shipped with the package), mean per item."""
    contexts = llava_visual_contexts()
    return round(sum(map(len, contexts.values())) / max(1, len(contexts)) / CHARS_PER_TOKEN)


def answered_in(output: Path) -> Counter[tuple[str, str, str]]:
    """(model, task, condition) -> records without error already in the run directory (finished or killed)."""
    counts: Counter[tuple[str, str, str]] = Counter()
    files = [output / "samples.jsonl", *sorted((output / "shards").glob("rank*.jsonl"))]
    for path in filter(Path.is_file, files):
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut short by a kill
            if not record.get("error"):
                counts[(record["model"], record["task"], record["condition"])] += 1
    return counts


def cached_answers(plan: RunPlan, options: RunOptions) -> Counter[tuple[str, str, str]]:
    """(model, task, condition) -> answers the answer cache holds for the cell's samples, looked up as a run
    looks them up (same preparation and key, before any shift); nothing is shifted or generated, and a model is
    loaded (and its fingerprint recorded) only when its fingerprint is not on record."""
    counts: Counter[tuple[str, str, str]] = Counter()
    path = options.cache_dir / "answers.sqlite"
    if not options.use_cache or options.fresh or not path.is_file():
        return counts
    cells = grid_cells(options, plan)
    with closing(AnswerCache(path)) as cache, closing(ShiftEngine(None)) as engine:
        for spec in options.models:
            model = load_model_when_needed(spec, options.model_args, options.cache_dir)
            runner = CellRunner(model, cache, engine, options, {"generated": 0, "cached": 0})
            for cell in tqdm(cells, desc=f"checking the answer cache for {model.name}", unit="cell", file=sys.stderr,
                             disable=not options.progress):
                for start in range(0, len(cell.samples), options.batch_size):
                    batch = runner.look_up(cell.adapter, cell.samples[start:start + options.batch_size],
                                           cell.condition)
                    counts[(model.name, cell.task, cell.condition.label)] += sum(p.cached is not None
                                                                                 for p in batch.items)
    return counts


def estimate(plan: RunPlan, options: RunOptions, model_names: list[str],
             answered: Counter[tuple[str, str, str]]) -> list[DatasetCost]:
    """The cost of each dataset row; `answered` counts what is already there per (model, task, condition)."""
    rows: dict[str, DatasetCost] = {}
    specs = {spec.task: spec for spec in plan.tasks}
    conditions = {c.label: c for c in plan.conditions}
    context_tokens = _context_tokens()
    for dataset, task, label in _cells(plan):
        row = rows.setdefault(dataset, DatasetCost(dataset))
        condition = conditions[label]
        spec = plan.domains.task_spec(specs[task], condition) if condition.kind == "domain" else specs[task]
        size = task_size(spec) if spec is not None else "?"
        row.cells += 1
        if not size.isdigit():
            row.unknown_size = True
            continue
        samples = min(int(size), options.limit) if options.limit else int(size)
        adapter = plan.adapter(task, condition)
        row.samples += samples
        row.generations += samples * len(options.models)
        row.answered += sum(min(samples, answered[(name, task, label)]) for name in model_names)
        calls = samples * len(options.models) * adapter.judge_calls_per_answer()
        row.judge_calls += calls
        protocol = adapter.judge_protocol() or {}
        if calls:
            rubric = str(protocol.get("rubric", "auto"))
            context = context_tokens if rubric == "llava_visual" else 0
            row.judge_tokens += calls * _judge_tokens_per_call(rubric, context)
        if condition.kind in ("image", "joint"):
            row.shifted_images += samples
    return list(rows.values())


def probe_throughput(options: RunOptions) -> float:
    """Answers per second of the first model on a few short requests (built-in scenes, one question each),
    after a warm-up request; loading the model is not counted."""
    model = load_model(options.models[0], **options.model_args)
    images = [draw_scene(scene_rng(7, i)).image for i in range(PROBE_REQUESTS)]
    requests = [Request("Describe the image in one sentence.", (image,), PROBE_NEW_TOKENS) for image in images]
    model.generate(requests[:1])
    start = time.perf_counter()
    for begin in range(0, len(requests), options.batch_size):
        model.generate(requests[begin:begin + options.batch_size])
    return len(requests) / max(time.perf_counter() - start, 1e-9)


def report(costs: list[DatasetCost], throughput: float | None, measured: bool, answered_where: str) -> str:
    """The table and the totals as printed."""
    def number(value: int, unknown: bool) -> str:
        return f"{value:,}+?" if unknown else f"{value:,}"

    table = [[c.dataset, c.cells, number(c.samples, c.unknown_size), number(c.generations, c.unknown_size),
              f"{c.answered:,}", f"{c.judge_calls:,}", f"{c.judge_tokens:,}", f"{c.shifted_images:,}"] for c in costs]
    unknown = any(c.unknown_size for c in costs)
    generations = sum(c.generations for c in costs)
    remaining = generations - sum(c.answered for c in costs)
    lines = [tabulate(table, headers=["dataset", "cells", "samples", "generations", "answered", "judge calls",
                                      "judge tokens", "shifted images"], tablefmt="github", disable_numparse=True,
                     colalign=["left", *["right"] * 7]),
             "",
             f"{len(costs)} datasets, {sum(c.cells for c in costs)} cells: {generations:,} generations"
             f"{' (+ tasks of unknown size)' if unknown else ''}, {remaining:,} still to compute "
             f"({generations - remaining:,} answered in {answered_where}); "
             f"{sum(c.judge_calls for c in costs):,} LLM judge calls, about {sum(c.judge_tokens for c in costs):,} "
             f"judge prompt tokens (characters / {CHARS_PER_TOKEN}, with {ASSUMED_ITEM_TOKENS} tokens assumed per "
             f"question + reference + answer); at most {sum(c.shifted_images for c in costs):,} shifted images (one "
             f"per distinct image and condition: questions about one image share it)"]
    if throughput:
        how = f"measured on {PROBE_REQUESTS} short answers" if measured else "given"
        hours = remaining / throughput / 3600
        lines.append(f"estimated generation time: {hours:.2f} h at {throughput:.2f} samples/s ({how}; judge calls "
                     "and model loading not included)")
    return "\n".join(lines)
