"""Declarative task configs and shift suites (YAML, shipped as package data; more via --include-path).

Everything here is checked before any model loads, so a typo costs a second, not a model load.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

from vittle_bench.registry import UnknownNameError, unknown_name_message
from vittle_bench.shifts import ShiftCondition, parse_condition
from vittle_bench.tasks import TASK_ADAPTERS

PACKAGE_CONFIGS = Path(str(files("vittle_bench") / "configs"))
_TASK_KEYS = {"task", "description", "source", "subset", "split", "adapter", "adapter_args", "groups", "columns", "revision",
              "domains"}  # `domains:` is read by shifts/domain.py (rows swapped under a domain condition)
DEFAULT_TASKS = "builtin"
DEFAULT_SHIFTS = "quick"


class ConfigError(ValueError):
    """A bad task, suite or shift specification (the CLI prints it as one line and exits 2)."""


@dataclass(frozen=True)
class TaskSpec:
    task: str
    source: str
    adapter: str
    path: Path
    subset: str | None = None
    split: str | None = None
    description: str = ""
    groups: tuple[str, ...] = ()
    adapter_args: dict[str, Any] = field(default_factory=dict)
    columns: dict[str, str] = field(default_factory=dict)
    revision: str | None = None


def _yaml_files(kind: str, include_paths: list[Path]) -> list[Path]:
    found = sorted((PACKAGE_CONFIGS / kind).glob("*.yaml"))
    for root in include_paths:
        if not root.is_dir():
            raise ConfigError(f"--include-path {root} is not a directory")
        found += sorted(root.glob("**/*.yaml"))
    return found


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: malformed YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def load_task_specs(include_paths: list[Path] | None = None) -> dict[str, TaskSpec]:
    specs: dict[str, TaskSpec] = {}
    for path in _yaml_files("tasks", include_paths or []):
        data = _read(path)
        if "task" not in data:
            continue  # a shift suite living in an included directory
        unknown = set(data) - _TASK_KEYS
        missing = {"source", "adapter"} - set(data)
        if unknown or missing:
            raise ConfigError(f"{path}: " + "; ".join(filter(None, [
                f"unknown keys {sorted(unknown)}" if unknown else "", f"missing keys {sorted(missing)}" if missing else ""])))
        if data["adapter"] not in TASK_ADAPTERS:
            raise ConfigError(f"{path}: {unknown_name_message('tasks', data['adapter'], TASK_ADAPTERS.names())}")
        spec = TaskSpec(path=path, **{k: (tuple(v) if k == "groups" else v) for k, v in data.items() if k != "domains"})
        specs[spec.task] = spec
    return specs


def resolve_tasks(text: str, include_paths: list[Path] | None = None) -> list[TaskSpec]:
    """Comma-separated task names and/or group names, in order, without duplicates."""
    specs = load_task_specs(include_paths)
    groups: dict[str, list[str]] = {}
    for spec in specs.values():
        for group in spec.groups:
            groups.setdefault(group, []).append(spec.task)
    chosen: list[str] = []
    for name in filter(None, (n.strip() for n in text.split(","))):
        members = groups.get(name) or ([name] if name in specs else None)
        if members is None:
            raise UnknownNameError(unknown_name_message("tasks", name, sorted(specs) + sorted(groups)))
        chosen += [m for m in members if m not in chosen]
    return [specs[n] for n in chosen]


def load_suites(include_paths: list[Path] | None = None) -> dict[str, dict[str, Any]]:
    suites = {}
    for path in _yaml_files("shifts", include_paths or []):
        data = _read(path)
        if "suite" in data:
            if not isinstance(data.get("conditions"), list):
                raise ConfigError(f"{path}: a suite needs a list of conditions")
            suites[data["suite"]] = data
    return suites


def named_conditions(text: str, include_paths: list[Path] | None = None) -> set[str]:
    """Labels of the conditions `--shifts` names directly, not through a suite (a suite may hold conditions
    that apply to other tasks than the selected ones; a condition named on its own must apply)."""
    suites = load_suites(include_paths)
    names = [n.strip() for n in text.split(",") if n.strip() and n.strip() not in suites]
    labels = set()
    for name in names:
        try:
            labels.add(parse_condition(name).label)
        except (ValueError, UnknownNameError):
            continue  # resolve_shifts reports it
    return labels


def resolve_shifts(text: str, include_paths: list[Path] | None = None) -> list[ShiftCondition]:
    """Suites and/or conditions (`name@sev`, `image@sev+text@sev`); clean always comes first, once."""
    suites = load_suites(include_paths)
    labels: list[str] = ["clean"]
    for item in filter(None, (n.strip() for n in text.split(","))):
        if item in suites:
            labels += [str(c) for c in suites[item]["conditions"]]
        elif "@" in item or item == "clean" or item.startswith("domain:"):
            labels.append(item)
        else:
            from vittle_bench.shifts import SHIFTS

            raise UnknownNameError(unknown_name_message("shifts", item, sorted(suites) + SHIFTS.names()))
    conditions: list[ShiftCondition] = []
    for label in labels:
        try:
            condition = parse_condition(label)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if condition.label not in {c.label for c in conditions}:
            conditions.append(condition)
    return conditions
