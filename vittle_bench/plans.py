"""Evaluation plans: which cells of the task x condition grid to run, when not the full product.

`--tasks A,B --shifts S` runs every task under every condition. A plan lists cells as blocks, each block the
product of its own tasks (names or groups) and conditions (conditions or suites):

    plan: myplan
    description: what the plan reproduces
    cells:
      - tasks: [llava_bench_coco]
        shifts: [clean, paper30]
      - tasks: [pope_random, pope_popular, pope_adversarial]
        shifts: [clean, gaussian_noise@3, frost@3]
        dataset: POPE          # optional: the block's tasks count as one dataset per condition

Rules: a block's conditions are exactly those it lists (clean only where listed); a cell (task, condition)
appears in one block only; a domain condition a suite brings in is dropped for the tasks that do not declare
it (as with `--shifts`), one named on its own must be declared for every task of its block. Plans ship in
`vittle_bench/configs/plans/`; more come from `--include-path` directories, or `--plan FILE`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vittle_bench.config import TaskSpec, config_files, expand_conditions, is_condition, load_yaml, resolve_tasks
from vittle_bench.errors import ConfigError
from vittle_bench.registry import UnknownNameError, unknown_name_message
from vittle_bench.shifts import ShiftCondition

PLAN_KEYS = {"plan", "description", "cells", "columns", "override"}
BLOCK_KEYS = {"tasks", "shifts", "dataset"}


@dataclass(frozen=True)
class PlanBlock:
    tasks: tuple[str, ...]
    shifts: tuple[str, ...]
    dataset: str | None = None  # the block's tasks count as one dataset per condition


@dataclass(frozen=True)
class ColumnBlock:
    """How `leaderboard --plan` groups these tasks' conditions into columns: (column, selectors) in order; a
    selector is a condition label or `kind:KIND` (every condition of that shift kind)."""

    tasks: tuple[str, ...]
    columns: tuple[tuple[str, tuple[str, ...]], ...]

    def column_of(self, condition: str, kind: str) -> str | None:
        for column, selectors in self.columns:
            if condition in selectors or f"kind:{kind}" in selectors:
                return column
        return None


@dataclass(frozen=True)
class Plan:
    name: str
    path: Path
    description: str
    blocks: tuple[PlanBlock, ...]
    columns: tuple[ColumnBlock, ...] = ()

    def column_of(self, task: str, condition: str, kind: str) -> str | None:
        """The leaderboard column of a cell: as the plan's `columns` declare for the task (None: in no column),
        else the shift kind (clean, image, text, joint, domain)."""
        block = next((b for b in self.columns if task in b.tasks), None)
        return block.column_of(condition, kind) if block else kind

    def column_order(self) -> list[str]:
        return list(dict.fromkeys(column for block in self.columns for column, _ in block.columns))

    def record(self) -> dict[str, Any]:
        """What manifest.json keeps of the plan."""
        return {"plan": self.name, "file": str(self.path), "blocks": [
            {"tasks": list(b.tasks), "shifts": list(b.shifts), **({"dataset": b.dataset} if b.dataset else {})}
            for b in self.blocks]}


@dataclass(frozen=True)
class PlanCell:
    task: TaskSpec
    condition: ShiftCondition
    block: int  # index into Plan.blocks
    named: bool  # the condition is named in the block itself (not brought in by a suite)
    joined_as: str | None = None  # the block's `dataset`: its tasks count as one dataset per condition

    @property
    def dataset(self) -> str:
        """The dataset row this cell belongs to (POPE's three splits under one condition are one dataset)."""
        return f"{self.joined_as or self.task.task} × {self.condition.label}"


def _names(value: Any, where: str, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
        raise ConfigError(f"{where}: `{key}` must be a non-empty list of names")
    return tuple(v.strip() for v in value)


def parse_plan(path: Path, data: Any) -> Plan:
    """Validate a plan file's structure (names are resolved by `expand_plan`)."""
    if not isinstance(data, dict) or not isinstance(data.get("plan"), str) or not data["plan"].strip():
        raise ConfigError(f"{path}: a plan file needs `plan: NAME` and `cells:`")
    unknown = sorted(set(data) - PLAN_KEYS)
    if unknown:
        raise ConfigError(f"{path}: unknown keys {unknown} (allowed: {', '.join(sorted(PLAN_KEYS))})")
    cells = data.get("cells")
    if not isinstance(cells, list) or not cells:
        raise ConfigError(f"{path}: `cells` must be a non-empty list of blocks (tasks: [...], shifts: [...])")
    blocks = []
    for i, block in enumerate(cells, start=1):
        where = f"{path}: cells[{i}]"
        if not isinstance(block, dict):
            raise ConfigError(f"{where} must be a mapping with tasks and shifts")
        unknown = sorted(set(block) - BLOCK_KEYS)
        if unknown:
            raise ConfigError(f"{where}: unknown keys {unknown} (allowed: {', '.join(sorted(BLOCK_KEYS))})")
        dataset = block.get("dataset")
        if dataset is not None and (not isinstance(dataset, str) or not dataset.strip()):
            raise ConfigError(f"{where}: `dataset` must be a name")
        tasks, shifts = _names(block.get("tasks"), where, "tasks"), _names(block.get("shifts"), where, "shifts")
        blocks.append(PlanBlock(tasks, shifts, dataset))
    return Plan(data["plan"].strip(), path, str(data.get("description") or "").strip(), tuple(blocks),
                _columns(path, data.get("columns")))


def _columns(path: Path, data: Any) -> tuple[ColumnBlock, ...]:
    if data is None:
        return ()
    if not isinstance(data, list):
        raise ConfigError(f"{path}: `columns` must be a list of blocks (tasks: [...], then COLUMN: [conditions])")
    blocks = []
    for i, block in enumerate(data, start=1):
        where = f"{path}: columns[{i}]"
        if not isinstance(block, dict) or "tasks" not in block or len(block) < 2:
            raise ConfigError(f"{where} must map `tasks` and at least one column to its conditions")
        columns = tuple((str(column), _names(selectors, where, str(column)))
                        for column, selectors in block.items() if column != "tasks")
        blocks.append(ColumnBlock(_names(block["tasks"], where, "tasks"), columns))
    return tuple(blocks)


def _read(path: Path) -> Any:
    try:
        return load_yaml(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the plan ({str(exc).splitlines()[0]})") from None


def load_plans(include_paths: list[Path] | None = None) -> dict[str, Plan]:
    """Every plan, the package's and each include path's; a user plan named like a built-in replaces it only
    with `override: true`, and two user files never define one plan."""
    plans: dict[str, Plan] = {}
    builtin: set[str] = set()
    for path, is_builtin in config_files("plans", include_paths or []):
        data = _read(path)
        if not isinstance(data, dict) or "plan" not in data:
            continue  # a task or suite file in an included directory
        plan = parse_plan(path, data)
        if plan.name in plans and not (plan.name in builtin and data.get("override") is True):
            raise ConfigError(f"{path}: plan {plan.name!r} is the built-in plan of {plans[plan.name].path}; add "
                              "`override: true` to use this one instead" if plan.name in builtin else
                              f"{path}: plan {plan.name!r} is also defined in {plans[plan.name].path}")
        (builtin.add if is_builtin else builtin.discard)(plan.name)
        plans[plan.name] = plan
    return plans


def resolve_plan(name_or_file: str, include_paths: list[Path] | None = None) -> Plan:
    """A plan by name, or the plan file at that path."""
    path = Path(name_or_file)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"--plan {name_or_file}: no such file")
        return parse_plan(path, _read(path))
    plans = load_plans(include_paths)
    if name_or_file not in plans:
        raise UnknownNameError(unknown_name_message("plans", name_or_file, sorted(plans)))
    return plans[name_or_file]


def expand_plan(plan: Plan, include_paths: list[Path] | None = None) -> list[PlanCell]:
    """The plan's cells in block order; an unknown task or condition, or a cell listed twice, is a ConfigError
    naming the plan file and the block."""
    cells: list[PlanCell] = []
    first_block: dict[tuple[str, str], int] = {}
    for i, block in enumerate(plan.blocks):
        where = f"{plan.path}: cells[{i + 1}]"
        try:
            tasks = resolve_tasks(",".join(block.tasks), include_paths)
            conditions = expand_conditions(list(block.shifts), include_paths)
        except (ConfigError, UnknownNameError) as exc:
            raise ConfigError(f"{where}: {exc}") from None
        named = {c.label for c in expand_conditions([s for s in block.shifts if is_condition(s)], include_paths)}
        for spec in tasks:
            for condition in conditions:
                key = (spec.task, condition.label)
                if key in first_block:
                    raise ConfigError(f"{where}: cell {spec.task} × {condition.label} is already in "
                                      f"cells[{first_block[key] + 1}]; each cell is listed once")
                first_block[key] = i
                cells.append(PlanCell(spec, condition, i, condition.label in named, block.dataset))
    return cells
