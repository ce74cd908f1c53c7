"""A run's plan: its options, and every name, file and directory checked before anything heavy loads.

`plan_run` resolves tasks and shift conditions, builds each task's adapter with the run's judge choice (and the
adapter of every domain cell that is scored another way), checks the output and cache directories, and names
the suite conditions no selected task declares; a mistake is one ConfigError line, before any model loads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, cast

from vittle_bench.adapters import TASK_ADAPTERS, TaskAdapter
from vittle_bench.adapters.base import check_adapter_args
from vittle_bench.config import (
    DEFAULT_SHIFTS,
    DEFAULT_TASKS,
    TaskSpec,
    named_conditions,
    resolve_shifts,
    resolve_tasks,
)
from vittle_bench.domains import DomainError, DomainResolver
from vittle_bench.errors import ConfigError
from vittle_bench.judges import judge_class
from vittle_bench.models.base import validate_model_spec
from vittle_bench.plans import Plan, PlanCell, expand_plan, resolve_plan
from vittle_bench.run_metrics import RUN_METRICS, RunContext, RunMetric
from vittle_bench.shifts import ShiftCondition


def default_cache_dir() -> Path:
    return Path.home() / ".cache" / "vittle-bench"


@dataclass
class RunOptions:
    models: list[str]
    output: Path
    tasks: str = DEFAULT_TASKS
    shifts: str = DEFAULT_SHIFTS
    plan: str | None = None  # a plan name or file: its cells instead of the tasks x shifts product
    limit: int | None = None
    batch_size: int = 32
    shift_workers: int = 1  # processes computing shifted images (1: in the runner's own process)
    prefetch: int = 2  # batches shifted ahead of the model while it generates (0: none)
    seed: int = 0
    model_args: dict[str, Any] = field(default_factory=dict)
    include_paths: list[Path] = field(default_factory=list)
    cache_dir: Path = field(default_factory=default_cache_dir)
    use_cache: bool = True  # read and write the answer cache
    fresh: bool = False  # write but do not read the cache: recompute every answer
    fail_fast: bool = False  # stop at the first per-sample error instead of recording it
    judge: str | None = None  # overrides the judge of every judged task (e.g. openai:gpt-4o-2024-08-06)
    judge_args: dict[str, Any] = field(default_factory=dict)
    data_dir: Path | None = None  # offline copies of hub datasets: DATA_DIR/org/name[/config]
    metrics: tuple[str, ...] = ()  # extra run-level metrics: "emi" (EMI per cell, EMID per shift)
    emi_encoders: tuple[str | None, str | None] = (None, None)  # image, text; None = the paper's, else offline
    emi_estimator: str = "club-reference"  # a CLUB recipe to fit, or a saved estimator's path (compare runs)
    command_line: str = ""
    progress: bool = True


@dataclass
class RunPlan:
    tasks: list[TaskSpec]
    conditions: list[ShiftCondition]
    domains: DomainResolver
    adapters: dict[str, TaskAdapter]  # task name -> its adapter, with the run's judge choice applied
    domain_adapters: dict[tuple[str, str], TaskAdapter]  # (task, domain condition) -> the adapter scoring that cell
    skipped: list[ShiftCondition]  # suite conditions that no selected task declares (domains of other tasks)
    run_metrics: list[RunMetric] = field(default_factory=list)  # `--metrics`, collected as the runner merges cells
    cells: frozenset[tuple[str, str]] | None = None  # (task, condition label) of a plan; None: the full product
    evaluation_plan: Plan | None = None  # `--plan`
    plan_cells: list[PlanCell] | None = None

    def has_cell(self, task: str, condition: ShiftCondition) -> bool:
        return self.cells is None or (task, condition.label) in self.cells

    def adapter(self, task: str, condition: ShiftCondition) -> TaskAdapter:
        return self.domain_adapters.get((task, condition.label)) or self.adapters[task]


def make_adapter(spec: TaskSpec, options: RunOptions) -> TaskAdapter:
    """The task's adapter with the run's judge choice and judgment cache applied (judged tasks only)."""
    cls = cast("type[TaskAdapter]", TASK_ADAPTERS.get(spec.adapter))
    check_adapter_args(spec.adapter, spec.adapter_args, str(spec.path))  # a domain's overrides were not checked yet
    args = dict(spec.adapter_args)
    if cls.judged:
        if options.judge:
            args["judge"] = options.judge
            args["judge_args"] = {**args.get("judge_args", {}), **options.judge_args}
        if options.use_cache:
            args.setdefault("judge_cache", str(options.cache_dir / "judgments.sqlite"))
    return cls(**args)


def _check_writable(path: Path, what: str) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(f"{what} {path} is not writable ({exc.strerror})") from None


def plan_run(options: RunOptions, writes: bool = True) -> RunPlan:
    """Validate every name and (for a run that `writes`; not `--dry-run`) the output and cache directories
    before anything heavy loads."""
    _check_counts(options)
    for model in options.models:
        validate_model_spec(model, options.model_args)
    evaluation_plan = resolve_plan(options.plan, options.include_paths) if options.plan else None
    plan_cells = expand_plan(evaluation_plan, options.include_paths) if evaluation_plan else None
    if plan_cells is None:
        tasks = resolve_tasks(options.tasks, options.include_paths)
        conditions = resolve_shifts(options.shifts, options.include_paths)
    else:
        tasks = list({c.task.task: c.task for c in plan_cells}.values())
        conditions = _plan_conditions(plan_cells)
    if not tasks:
        raise ConfigError("no tasks selected")
    if options.judge and judge_class(options.judge).pairwise:  # an unknown judge fails here, before any model loads
        raise ConfigError(f"--judge {options.judge}: the pairwise judge is no --judge value; pairwise tasks take "
                          "--judge openai:MODEL and use it for that model")
    adapters = {}
    for spec in tasks:  # so does a task whose adapter cannot work with this judge choice
        try:
            adapters[spec.task] = make_adapter(spec, options)
        except ConfigError as exc:
            raise ConfigError(f"task {spec.task}: {exc}") from None
    run_metrics = _run_metrics(options)
    for condition in conditions:  # e.g. a machine-translation shift whose model cannot be loaded offline
        try:
            condition.shift.preflight()
        except RuntimeError as exc:
            raise ConfigError(f"{condition.label}: {exc}") from None
    domains = DomainResolver(options.include_paths)
    try:
        if plan_cells is None:
            named = named_conditions(options.shifts, options.include_paths)
            undeclared = domains.undeclared(tasks, conditions)
            domains.check(tasks, [c for c in undeclared if c.label in named])
            skipped = [c for c in undeclared if c.label not in named]
            cells = None
        else:
            assert evaluation_plan is not None  # plan_cells come from it
            plan_cells = _declared_plan_cells(plan_cells, domains, evaluation_plan.path)
            cells = frozenset((c.task.task, c.condition.label) for c in plan_cells)
            skipped = [c for c in conditions if not any(label == c.label for _, label in cells)]
        conditions = [c for c in conditions if c not in skipped]
        domain_adapters = _domain_adapters(tasks, conditions, domains, adapters, options)
    except DomainError as exc:
        raise ConfigError(str(exc)) from None
    if options.data_dir is not None and not options.data_dir.is_dir():  # else the hub would be tried instead
        raise ConfigError(f"--data-dir {options.data_dir} is not a directory")
    if writes and (options.use_cache or not options.cache_dir.is_dir()):  # answers go there; built-in data too
        _check_writable(options.cache_dir, "cache directory (--cache-dir)")
    if writes:
        _check_writable(options.output, "output directory")
    return RunPlan(tasks, conditions, domains, adapters, domain_adapters, skipped, run_metrics, cells,
                   evaluation_plan, plan_cells)


def _check_counts(options: RunOptions) -> None:
    if options.limit is not None and options.limit < 1:
        raise ConfigError(f"--limit must be at least 1 (got {options.limit}); leave it out to run every sample")
    if options.batch_size < 1:
        raise ConfigError("--batch-size must be at least 1")
    if options.shift_workers < 1 or options.prefetch < 0:
        raise ConfigError("--shift-workers must be at least 1 and --prefetch at least 0")


def _plan_conditions(cells: list[PlanCell]) -> list[ShiftCondition]:
    """The plan's conditions, each once, clean first when the plan has it."""
    conditions = list({c.condition.label: c.condition for c in cells}.values())
    return sorted(conditions, key=lambda c: c.label != "clean")


def _declared_plan_cells(cells: list[PlanCell], domains: DomainResolver, path: Path) -> list[PlanCell]:
    """A plan's cells without the domain cells a suite brought in for a task that does not declare the domain;
    a domain the block names itself must be declared for each of its tasks."""
    kept = []
    for cell in cells:
        if cell.condition.kind == "domain" and domains.task_spec(cell.task, cell.condition) is None:
            if cell.named:
                raise DomainError(f"{path}: cells[{cell.block + 1}]: task {cell.task.task} does not declare "
                                  f"{cell.condition.label} (declare it under `domains:` in the task or suite YAML)")
            continue
        kept.append(cell)
    return kept


def _run_metrics(options: RunOptions) -> list[RunMetric]:
    """The run-level metrics asked for, each checked now (e.g. a missing or foreign EMI estimator file), not
    after the generation. The registry is consulted only when some are asked for: they load heavy libraries."""
    if not options.metrics:
        return []
    context = RunContext(options.seed, options.cache_dir if options.use_cache else None, options.output,
                         {f.name: getattr(options, f.name) for f in fields(options)})
    metrics = []
    for name in options.metrics:
        if name not in RUN_METRICS:
            raise ConfigError(f"unknown --metrics {name!r}; available: {', '.join(RUN_METRICS)}")
        metric = RUN_METRICS.get(name)(context)
        metric.check()
        metrics.append(metric)
    return metrics


def _domain_adapters(tasks: list[TaskSpec], conditions: list[ShiftCondition], domains: DomainResolver,
                     adapters: dict[str, TaskAdapter], options: RunOptions) -> dict[tuple[str, str], TaskAdapter]:
    """The adapter of every domain cell whose declaration scores it another way than the task's own (a
    `judged_as` or `task:` domain keeps the judge protocol of the items it swaps in); its headline metric
    must be the task's, so the cell belongs in the task's row."""
    found = {}
    for spec in tasks:
        for condition in conditions:
            scoring = domains.scoring_spec(spec, condition) if condition.kind == "domain" else None
            if scoring is None or (scoring.adapter, scoring.adapter_args) == (spec.adapter, spec.adapter_args):
                continue
            try:
                adapter = make_adapter(scoring, options)
            except ConfigError as exc:
                raise ConfigError(f"task {spec.task} under {condition.label}: {exc}") from None
            if adapter.headline != adapters[spec.task].headline:
                raise ConfigError(f"task {spec.task} under {condition.label}: the domain's rows are scored by "
                                  f"{scoring.adapter} with headline {adapter.headline}, not the task's "
                                  f"{adapters[spec.task].headline}; fix the domain's judged_as / adapter")
            found[spec.task, condition.label] = adapter
    return found
